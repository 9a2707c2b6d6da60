"""Facts about the machine and the installed versions, for `nanonorm info`, the report and the
benchmarks (library code: no command-line parsing here)."""
from __future__ import annotations

__all__ = ["environment", "cuda_facts", "cuda_kernels_run"]


def environment() -> dict:
    """Versions and machine facts, shared with the report and the benchmarks."""
    import datetime
    import importlib.metadata as md
    import os
    import platform

    versions = {}
    for dist in ("nanonorm", "numpy", "numba", "array-api-compat", "safetensors", "matplotlib",
                 "cupy-cuda12x", "cupy-cuda13x", "numba-cuda", "torch", "transformers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_simd": _cpu_simd(),
        "cpu_count": os.cpu_count(),
        "blas": _numpy_blas(),
        "gpu": _gpu_name(),
        "cuda": cuda_facts(),
        "versions": versions,
    }


def cuda_facts() -> dict:
    """The CUDA side without launching anything: numba-cuda's version and whether its simulator
    is on; with CuPy, the CUDA runtime and driver versions and the devices; `missing` says
    why there is no GPU here (None: there is one)."""
    import importlib.metadata as md
    facts = {"numba_cuda": None, "simulator": None, "cupy": None, "runtime": None,
             "driver": None, "devices": 0, "missing": None}
    try:
        facts["numba_cuda"] = md.version("numba-cuda")
        from numba import config                 # numba reads NUMBA_ENABLE_CUDASIM once
        facts["simulator"] = bool(config.ENABLE_CUDASIM)
    except Exception:  # no numba-cuda, or a numba that fails to import: no kernels either way
        pass
    try:
        import cupy
    except ImportError:
        facts["missing"] = "no GPU / CuPy not installed (pip install 'nanonorm[gpu]')"
        return facts
    facts["cupy"] = cupy.__version__
    runtime = cupy.cuda.runtime
    try:
        facts["runtime"] = _cuda_version(runtime.runtimeGetVersion())
        facts["driver"] = _cuda_version(runtime.driverGetVersion())
        facts["devices"] = runtime.getDeviceCount()
    except Exception as e:  # no driver, or one older than the runtime
        facts["missing"] = f"no GPU: CUDA runtime unavailable ({type(e).__name__}: {e})"
    if not facts["devices"] and not facts["missing"]:
        facts["missing"] = "no GPU: CuPy sees no CUDA device"
    return facts


def _cuda_version(v: int) -> str:
    """12040 -> '12.4', as CUDA encodes it (1000 * major + 10 * minor); 0: no driver."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"


def cuda_kernels_run(facts: dict | None = None) -> dict:
    """Compile and launch one nanonorm CUDA kernel (GELU forward on 8 floats) where it can run:
    on a CuPy array with a GPU, on a NumPy array under numba-cuda's simulator. Returns
    {"ran": True/False, "on": "gpu"/"simulator", "error": None or why}, or {"ran": None,
    "error": why} where neither is possible."""
    import numpy as np
    facts = facts or cuda_facts()
    on = "gpu" if facts["devices"] and not facts["simulator"] else \
        "simulator" if facts["simulator"] else None
    if on is None:
        return {"ran": None, "on": None,
                "error": facts["missing"] or "numba-cuda is not installed"}
    try:
        from .dispatch import kernels, unavailable
        from .ops.gelu import gelu_forward
        table = kernels("cuda")
        if not table:
            raise RuntimeError(unavailable().get("cuda", "no CUDA kernels"))
        x = np.linspace(-3.0, 3.0, 8, dtype=np.float32)
        if on == "gpu":
            import cupy
            y = cupy.asnumpy(table["gelu_forward"](cupy.asarray(x))[0])
        else:
            y = table["gelu_forward"](x)[0]
        if not np.allclose(y, gelu_forward(x)[0], rtol=1e-5, atol=1e-6):
            raise AssertionError(f"gelu_forward gave {y}, the reference {gelu_forward(x)[0]}")
    except Exception as e:  # a compile error (NVVM missing), a launch or a wrong answer
        return {"ran": False, "on": on, "error": f"{type(e).__name__}: {e}"}
    return {"ran": True, "on": on, "error": None}


def _cpu_name() -> str:
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_simd() -> str | None:
    """The widest x86 vector extension the CPU reports, or None: matmul-bound ratios hinge on
    it (an AVX-512 CPU doubled NumPy's sgemm rate here, torch's stayed put)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f
                          if line.startswith("flags")), set())
    except OSError:
        return None
    return next((ext for ext in ("avx512f", "avx2", "avx", "sse4_2") if ext in flags), None)


def _numpy_blas() -> str | None:
    """NumPy's BLAS library and version, as NumPy reports them."""
    import numpy as np
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # an older NumPy, or a build that does not say
        return None
    return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()


def _gpu_name() -> str | None:
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU" here
        return None
