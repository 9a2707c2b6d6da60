"""Compile every CUDA kernel to PTX for float32 and float64, without a GPU.

The simulator runs the kernels as Python, so it cannot catch what only the real compiler
rejects (typing, unsupported calls) or silently does differently (float64 leaking into float32
math). This check needs NVVM and NVRTC (a CUDA toolkit, or the nvidia-cuda-nvrtc wheel) but no
GPU and no driver; run it with the simulator off:

    NUMBA_ENABLE_CUDASIM=0 NUMBA_FORCE_CUDA_CC=9.0 python -m nanonorm.kernels.cuda.ptx_check

It prints one line per kernel and dtype (registers are decided later, by ptxas, on the GPU);
exit status 0: all compiled, 1: a kernel failed, 2: no usable NVVM/NVRTC here (nothing checked).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from numba import cuda, types


def kernel_modules():
    """Every module of this package but this check, imported: a kernel module added later is
    found with no edit here (helpers such as _common declare no kernels and add nothing)."""
    package = sys.modules[__package__]
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != Path(__file__).stem:
            yield importlib.import_module(f"{__package__}.{info.name}")


def signatures(ft):
    """(kernel, argument types) for every kernel, for one float type `ft`: each `@kernel` of
    each module (`_common.kernel` declares the types beside it), keyed "module._name"."""
    found = {}
    for module in kernel_modules():
        short = module.__name__.rpartition(".")[2]
        for name, obj in vars(module).items():
            # defined here, not imported from a sibling (which reports it under its own name)
            if callable(getattr(obj, "arg_types", None)) and obj.__module__ == module.__name__:
                found[f"{short}.{name}"] = (obj, tuple(obj.arg_types(ft)))
    return found


def _no_device(cc):
    """Device functions (the block reductions) ask the current device for its compute
    capability when a kernel calling them is compiled; answer for the target instead."""
    from numba.cuda import dispatcher

    class _Device:
        compute_capability = cc
    dispatcher.get_current_device = lambda: _Device()


def _toolchain_missing(cc) -> str | None:
    """Why PTX cannot be built here (None when it can): compile a trivial kernel."""
    def probe(a):
        a[0] = 1.0
    try:
        cuda.compile_ptx(probe, (types.float32[::1],), cc=cc)
    except Exception as e:  # missing libnvvm / libnvrtc / libdevice, in whatever form
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def main(cc=(9, 0)) -> int:
    if getattr(cuda.config, "ENABLE_CUDASIM", 0):
        print("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): set it to 0 to compile PTX")
        return 2
    missing = _toolchain_missing(cc)
    if missing:
        print(f"no CUDA compiler toolchain (NVVM + NVRTC) here: {missing}")
        return 2
    _no_device(cc)
    failures = 0
    for ft in (types.float32, types.float64):
        for name, (kernel, sig) in signatures(ft).items():
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            except Exception as e:  # report every kernel, then fail
                failures += 1
                print(f"FAIL {name} [{ft}]: {type(e).__name__}: {e}".splitlines()[0])
                continue
            # float32 kernels should do their elementwise math in f32: count f64 ops as a hint
            f64_ops = sum(1 for line in ptx.splitlines() if ".f64" in line)
            print(f"ok   {name} [{ft}]: {len(ptx.splitlines())} PTX lines, {f64_ops} with f64")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
