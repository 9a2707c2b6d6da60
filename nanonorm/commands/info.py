"""`nanonorm info`: versions, CPU, GPU, the kernels' threads and which implementation each op
runs."""
from __future__ import annotations

HELP = ("Print versions, the machine, the kernels' threads, and which implementation each op "
        "dispatches to")


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


def run(args) -> int:
    import json
    import os
    import warnings

    import numpy as np

    from ..dispatch import FallbackWarning

    from ..dispatch import implementation_for, kernels, unavailable
    from ..machine import environment

    env = environment()
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
