"""Shared pieces of the numba-cuda kernels: array module, launch geometry, the `@kernel`
decorator (cuda.jit plus declared argument types), block reductions.

The kernels take CuPy arrays on a GPU (through the CUDA array interface, no copies) and NumPy
arrays under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1), so the wrappers never import
CuPy at module level: the array module for allocation comes from the input.

Accumulators and reduction scratch are in the input's dtype: float32 rows never touch
float64 (a second ceiling beside bandwidth on Hopper, the bottleneck on consumer cards). Sums
keep float64's old accuracy with float32 operations: every accumulator is a pair s + e (the
rounding errors, caught exactly by TwoSum), along each thread's chain (`acc_add`) and at
every node of the block's tree (`block_sum`), rounded once at the end: the result is
~correctly rounded, so never less accurate than the reference's own sum in that dtype, even
under cancellation (Σ dy·p in a softmax backward, Σ (x - x0) in LayerNorm). That costs a few
float32 additions per element, free in these bandwidth-bound kernels. Every sum runs in a
fixed order, so results are bit-identical run to run.
"""
from __future__ import annotations

import math
import sys

import numpy as np
from numba import cuda

from nanonorm.backend import is_cupy_array

# Launch geometry comes in (GPU, simulator) pairs: under the simulator every GPU thread is a
# Python thread, and the small values let tiny test shapes reach every multi-thread and
# multi-block path (rows wider than a block, several column passes per thread).
# Threads per block; shared scratch is sized for it (a compile-time constant, which is why it
# is a global and not a kernel argument). Powers of two, for the tree reduction.
THREADS, SIM_THREADS = 256, 16


def simulator() -> bool:
    return bool(getattr(cuda.config, "ENABLE_CUDASIM", 0))


def pick(gpu, sim):
    """The GPU's value, or the simulator's small one when the simulator is on."""
    return sim if simulator() else gpu


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
    cap = pick(THREADS, SIM_THREADS)
    t = pick(32, 1)
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
def two_sum(a, b):
    """(s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth's TwoSum, branch-free).
    Needs IEEE order: no fastmath, which would fold e to 0."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@cuda.jit(device=True)
def acc_add(s, e, v):
    """The running sum s + e plus v (Ogita-Rump-Oishi Sum2): as accurate as summing in twice
    the dtype's precision, whatever the chain's length or cancellation."""
    s, q = two_sum(s, v)
    return s, e + q


@cuda.jit(device=True)
def acc_total(s, e):
    """s + e rounded once; an inf or NaN sum (whose e is NaN) stays as a plain sum's."""
    return s + e if math.isfinite(s) else s


@cuda.jit(device=True)
def tree_step(sa, se, t, k):
    """One tree step: pair t absorbs pair t + k, exactly up to the low parts' rounding."""
    hi, lo = two_sum(sa[t], sa[t + k])
    sa[t] = hi
    se[t] = (se[t] + se[t + k]) + lo


@cuda.jit(device=True)
def block_sum(sa, se, s, e):
    """The sum over the block of the pairs s + e, by a pairwise tree of pairs, rounded once at
    the end (so ~correctly rounded: never worse than a plain sum in the same dtype); every
    thread gets it. sa, se: shared (THREADS,) scratch in s's dtype, free again on return;
    blockDim.x a power of two. The tree's shape is fixed: the same result on every run."""
    t = cuda.threadIdx.x
    sa[t] = s
    se[t] = e
    cuda.syncthreads()
    k = cuda.blockDim.x // 2
    while k > 0:
        if t < k:
            tree_step(sa, se, t, k)
        cuda.syncthreads()
        k //= 2
    r = acc_total(sa[0], se[0])
    cuda.syncthreads()          # everyone has read the result before the scratch is reused
    return r


@cuda.jit(device=True)
def block_sum2(sa, se, sb, sf, a, ea, b, eb):
    """block_sum of two pairs at once (a + ea, b + eb) on the same syncs; sa, se, sb, sf:
    shared (THREADS,) scratch."""
    t = cuda.threadIdx.x
    sa[t] = a
    se[t] = ea
    sb[t] = b
    sf[t] = eb
    cuda.syncthreads()
    k = cuda.blockDim.x // 2
    while k > 0:
        if t < k:
            tree_step(sa, se, t, k)
            tree_step(sb, sf, t, k)
        cuda.syncthreads()
        k //= 2
    ra = acc_total(sa[0], se[0])
    rb = acc_total(sb[0], sf[0])
    cuda.syncthreads()
    return ra, rb


@cuda.jit(device=True)
def block_max(sa, a):
    """Max of a over the block; every thread gets it. sa: shared (THREADS,) scratch."""
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
