"""`nanonorm info`: versions, CPU, GPU, Numba's threading layer and which implementation each op
runs."""
from __future__ import annotations

HELP = ("Print versions, the machine, Numba's threading layer, and which implementation each "
        "op dispatches to")


def configure(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


def run(args) -> int:
    import json
    import warnings

    import numpy as np

    from ..dispatch import FallbackWarning

    from ..dispatch import implementation_for, kernels, unavailable
    from ..machine import environment

    env = environment()
    ops = sorted(kernels("reference"))
    env["unavailable"] = unavailable()
    if "numba" not in env["unavailable"]:
        from ..kernels.cpu.threads import state
        env["numba_threads"] = state()       # not started here: info runs no kernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)   # shown below, with its cause
        env["dispatch_numpy"] = {op: implementation_for(op, np.empty(0)) for op in ops}
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    for key in ("date", "python", "platform", "cpu", "cpu_simd", "cpu_count", "blas", "gpu"):
        print(f"{key:10s} {env[key]}")
    if "numba_threads" in env:
        t = env["numba_threads"]
        layer = t["layer"] or f"not started; the first kernel asks for {t['next']}"
        print(f"{'threads':10s} {layer} (chosen by {t['chosen_by']}: {t['why']})")
    for dist, version in env["versions"].items():
        print(f"{dist:18s} {version}")
    for impl, why in env["unavailable"].items():
        print(f"UNAVAILABLE: {impl}: {why}")
    print("dispatch for NumPy arrays:")
    for op, impl in env["dispatch_numpy"].items():
        print(f"  {op:40s} {impl}")
    return 0
