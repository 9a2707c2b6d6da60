"""Facts about the machine and the installed versions, for `nanonorm info`, the report and the
benchmarks (library code: no command-line parsing here)."""
from __future__ import annotations

__all__ = ["environment"]


def environment() -> dict:
    """Versions and machine facts, shared with the report and the benchmarks."""
    import datetime
    import importlib.metadata as md
    import os
    import platform

    versions = {}
    for dist in ("nanonorm", "numpy", "numba", "array-api-compat", "safetensors", "matplotlib",
                 "cupy-cuda12x", "numba-cuda", "torch", "transformers"):
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
        "versions": versions,
    }


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
