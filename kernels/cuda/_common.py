"""Shared pieces of the numba-cuda kernels: array module, launch geometry, the `@kernel`
decorator (cuda.jit plus declared argument types), block reductions.

The kernels take CuPy arrays on a GPU (through the CUDA array interface, no copies) and NumPy
arrays under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1), so the wrappers never import
CuPy at module level: the array module for allocation comes from the input.

Reductions run in float64 for float32 and float64 inputs alike (one value per thread, then a
shared-memory tree), as the CPU kernels accumulate in float64; elementwise math stays in the
input's dtype, so float32 keeps the fast single-precision exp/tanh.
"""
from __future__ import annotations

import sys

import numpy as np
from numba import cuda

from nanonorm.backend import is_cupy_array

# Threads per block on a GPU; shared arrays are sized for it (a compile-time constant, which is
# why it is a global and not a kernel argument). Must be a power of two for the tree reduction.
THREADS = 256
# Under the simulator every GPU thread is a Python thread: keep blocks small.
SIM_THREADS = 32


def simulator() -> bool:
    return bool(getattr(cuda.config, "ENABLE_CUDASIM", 0))


def array_module(x):
    """numpy or cupy, whichever `x` belongs to (the raw module: ascontiguousarray, empty)."""
    return sys.modules["cupy"] if is_cupy_array(x) else np


def float_dtype(*arrays):
    """The dtype the kernels run in and return: float32 or float64, the arrays' own. Any other
    (float16, an integer) is refused, never computed in another precision."""
    dts = [np.dtype(str(a.dtype)) for a in arrays if a is not None]
    for dt in dts:
        if dt not in (np.float32, np.float64):
            raise TypeError(f"the CUDA kernels take float32 or float64 arrays, got dtype {dt}")
    return np.result_type(*dts)


def threads_for(width: int) -> int:
    """Power-of-two block size for rows of `width` elements (no idle warps on short rows)."""
    cap = SIM_THREADS if simulator() else THREADS
    floor = 1 if simulator() else 32
    t = floor
    while t < width and t < cap:
        t *= 2
    return t


def stream_for(x):
    """Launch on CuPy's current stream, so kernels order with CuPy's own work (0: default)."""
    if is_cupy_array(x):
        ptr = sys.modules["cupy"].cuda.get_current_stream().ptr
        if ptr:
            return cuda.external_stream(ptr)
    return 0


def grid_1d(n: int, threads: int) -> int:
    """Blocks for a grid-stride loop over n elements (capped: each thread takes several)."""
    return max(1, min(-(-n // threads), 65535))


def kernel(arg_types, **jit_options):
    """`cuda.jit`, with the kernel's argument types declared beside it: `arg_types(ft)` gives
    the numba types for float type `ft` (float32 / float64). ptx_check compiles every kernel
    that carries them, so a new kernel is checked without editing a list there. Works alike
    on numba-cuda's Dispatcher and on the simulator's FakeCUDAKernel (both take attributes)."""
    def jit(fn):
        k = cuda.jit(**jit_options)(fn)
        k.arg_types = arg_types
        return k
    return jit


@cuda.jit(device=True)
def block_sum2(sa, sb, a, b):
    """Sums of a and b over the block; every thread gets both (blockDim.x a power of two).

    sa, sb: shared (THREADS,) float64 scratch, free again on return.
    """
    t = cuda.threadIdx.x
    sa[t] = a
    sb[t] = b
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            sa[t] += sa[t + s]
            sb[t] += sb[t + s]
        cuda.syncthreads()
        s //= 2
    ra = sa[0]
    rb = sb[0]
    cuda.syncthreads()          # everyone has read the result before the scratch is reused
    return ra, rb


@cuda.jit(device=True)
def block_max(sa, a):
    """Max of a over the block; every thread gets it. sa: shared (THREADS,) float64 scratch."""
    t = cuda.threadIdx.x
    sa[t] = a
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if t < s:
            sa[t] = max(sa[t], sa[t + s])
        cuda.syncthreads()
        s //= 2
    r = sa[0]
    cuda.syncthreads()
    return r

