"""`nanonorm info`: versions, CPU, GPU and which implementation each op runs."""
from __future__ import annotations

HELP = "Print versions, the machine, and which implementation each op dispatches to"


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


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


def run(args) -> int:
    import json

    import numpy as np

    from ..dispatch import implementation_for, kernels

    env = environment()
    ops = sorted(kernels("reference"))
    env["dispatch_numpy"] = {op: implementation_for(op, np.empty(0)) for op in ops}
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    for key in ("date", "python", "platform", "cpu", "cpu_simd", "cpu_count", "blas", "gpu"):
        print(f"{key:10s} {env[key]}")
    for dist, version in env["versions"].items():
        print(f"{dist:18s} {version}")
    print("dispatch for NumPy arrays:")
    for op, impl in env["dispatch_numpy"].items():
        print(f"  {op:40s} {impl}")
    return 0
