"""`nanonorm info`: versions, CPU, GPU and CUDA (runtime, driver, numba-cuda, whether the CUDA
kernels compile and run), the kernels' threads and which implementation each op runs."""
from __future__ import annotations

HELP = ("Print versions, the machine, CUDA and whether the CUDA kernels run, the kernels' "
        "threads, and which implementation each op dispatches to")


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


def run(args) -> int:
    import json
    import os
    import warnings

    import numpy as np

    from ..dispatch import FallbackWarning

    from ..dispatch import implementation_for, kernels, unavailable
    from ..machine import cuda_kernels_run, environment

    env = environment()
    env["cuda"]["kernels"] = cuda_kernels_run(env["cuda"])    # a tiny launch, where possible
    ops = sorted(kernels("reference"))
    env["unavailable"] = unavailable()
    if "numba" not in env["unavailable"]:
        from ..kernels.cpu.pool import ENV_VAR, default_threads
        env["kernel_threads"] = {"threads": default_threads(), "set_by": (
            ENV_VAR if os.environ.get(ENV_VAR) else "the CPUs this process may use")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)   # shown below, with its cause
        env["dispatch_numpy"] = {op: implementation_for(op, np.empty(0)) for op in ops}
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    for key in ("date", "python", "platform", "cpu", "cpu_simd", "cpu_count", "blas", "gpu"):
        print(f"{key:10s} {env[key]}")
    print(f"{'cuda':10s} {_cuda_line(env['cuda'])}")
    if "kernel_threads" in env:
        t = env["kernel_threads"]
        print(f"{'threads':10s} {t['threads']} for the kernels ({t['set_by']}), sleeping "
              f"between kernels; BLAS on one thread inside them")
    for dist, version in env["versions"].items():
        print(f"{dist:18s} {version}")
    for impl, why in env["unavailable"].items():
        print(f"UNAVAILABLE: {impl}: {why}")
    print("dispatch for NumPy arrays:")
    for op, impl in env["dispatch_numpy"].items():
        print(f"  {op:40s} {impl}")
    return 0


def _cuda_line(c: dict) -> str:
    """One line: the CUDA versions (or why there is no GPU) and whether the kernels ran."""
    sim = f"simulator {'on' if c['simulator'] else 'off'}"
    nc = f"numba-cuda {c['numba_cuda']} ({sim})" if c["numba_cuda"] else "no numba-cuda"
    where = c["missing"] or (f"runtime {c['runtime']}, driver {c['driver']}, {c['devices']} "
                             f"device(s), CuPy {c['cupy']}")
    k = c["kernels"]
    ran = ("CUDA kernels not run" if k["ran"] is None else
           f"CUDA KERNELS FAILED on the {k['on']}: {k['error']}" if not k["ran"] else
           "CUDA kernels compiled and ran on the GPU" if k["on"] == "gpu" else
           "CUDA kernels ran on the simulator, not a GPU")
    return f"{where}; {nc}: {ran}"
