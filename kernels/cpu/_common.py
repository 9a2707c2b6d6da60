"""Shared pieces of the Numba CPU kernels: the fastmath policy and a vectorizable exp.

Numba here has no SVML, so `np.exp` inside a loop runs one scalar libm call per element and
blocks vectorization. `vexp` below is Cephes' expf (range reduction by ln 2, degree-5
polynomial, exponent added in the integer domain): about 2 ulps in float32, and LLVM turns it
into AVX2 code; results below float32's smallest normal flush to 0. `vexp_subnormal` gives
those as np.exp does (2^n applied as two normal powers of two), ~6% slower in a softmax loop:
for attention, where a flushed p of 1e-40 can be a gradient's whole value. float64 keeps
`np.exp` (correctly rounded, scalar): the fast path is float32.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# Fastmath without nnan/ninf (masks use -inf and fully masked rows must stay exact), and
# without contract: an FMA that fuses one of two identical products breaks exact
# cancellations (g - mean(g) for a one-element row must be 0, not the product's rounding).
# Without reassoc: it lets LLVM choose a sum's order anew each time it optimises the code, and
# a kernel compiled in one process summed differently from the same kernel loaded from the
# on-disk cache in another. Row sums go through lanes.lane_sum / lane_dot instead (vector
# speed, one fixed order).
FASTMATH = {"nsz", "arcp", "afn"}

# A task kernel (run by pool.run on nanonorm's threads): the GIL released, and NumPy's error
# model, as Numba's parallel loops have it: Python's adds a zero-divisor check to every `/`,
# which keeps LLVM from vectorizing the loop (x / 0 is IEEE inf or NaN either way here).
TASK_KERNEL = dict(nogil=True, cache=True, fastmath=FASTMATH, error_model="numpy")


@intrinsic
def _i32_as_f32(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f32_as_i32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(cache=True, inline="always")
def _pow2(k):
    """2^k as a float32, for an int32 k in [-126, 127]."""
    return _i32_as_f32((k + np.int32(127)) << np.int32(23))


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)          # ln 2 split so n·LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_P0, _P1, _P2, _P3, _P4, _P5 = (np.float32(c) for c in (    # Cephes expf's polynomial
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
    5.0000001201e-1))
_XMAX = np.float32(88.72283)               # above: exp overflows float32
_XMIN = np.float32(-87.33654)              # below: result would be subnormal -> 0
_XSUB = np.float32(-103.97208)             # below: under half the smallest subnormal -> 0
_ONE, _HALF, _ZERO, _INF = np.float32(1.0), np.float32(0.5), np.float32(0.0), np.float32(np.inf)


# No reassoc here: it would merge the two-constant ln 2 split (Cody-Waite) of the range
# reduction. The flags are per instruction, so they survive LLVM inlining into callers that
# use FASTMATH (Numba-level inline="always" would recompile it with the caller's flags).
EXP_FASTMATH = {"nsz", "arcp", "afn", "contract"}


@njit(fastmath=EXP_FASTMATH, cache=True, inline="always")
def _reduced(x, lo):
    """(n, exp(r)) with x = n·ln2 + r, |r| <= ln2/2, for x clamped to [lo, 88.72]."""
    xc = min(max(x, lo), _XMAX)
    n = np.floor(xc * _LOG2E + _HALF)
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    return np.int32(n), p * (r * r) + r + _ONE                      # exp(r) in [0.7, 1.42]


@njit(fastmath=EXP_FASTMATH, cache=True)
def exp32(x):
    """exp of a float32 scalar, vectorizable; exp(-inf) = 0, exp(x > 88.72) = inf, NaN -> NaN
    (a NaN entry must reach the row's sum); results below float32's smallest normal
    (x < -87.34) flush to 0."""
    n, y = _reduced(x, _XMIN)
    out = _i32_as_f32(_f32_as_i32(y) + (n << np.int32(23)))        # y · 2^n
    out = _ZERO if x < _XMIN else out
    out = _INF if x > _XMAX else out
    return out if x == x else x


@njit(fastmath=EXP_FASTMATH, cache=True)
def exp32_subnormal(x):
    """exp32, with results down to the smallest subnormal as np.exp gives them."""
    n, y = _reduced(x, _XSUB)
    # y · 2^n as y · 2^h · 2^(n-h), h = n // 2: both factors normal for n in [-150, 128],
    # and the last product rounds into the subnormal range as a correctly rounded exp would
    h = n >> np.int32(1)
    out = (y * _pow2(h)) * _pow2(n - h)
    out = _ZERO if x < _XSUB else out
    out = _INF if x > _XMAX else out
    return out if x == x else x


def vexp(x):  # pragma: no cover - replaced inside njit by the overload below
    return np.exp(x)


def vexp_subnormal(x):  # pragma: no cover - replaced inside njit by the overload below
    return np.exp(x)


@overload(vexp, inline="always")
def _vexp_overload(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: np.exp(x)


@overload(vexp_subnormal, inline="always")
def _vexp_subnormal_overload(x):
    if x == types.float32:
        return lambda x: exp32_subnormal(x)
    return lambda x: np.exp(x)


@njit(fastmath=FASTMATH, parallel=False, cache=True)
def vexp_array(x, subnormal=False):
    """Elementwise vexp (or vexp_subnormal) of a 1-D array, for tests of their accuracy."""
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = vexp_subnormal(x[i]) if subnormal else vexp(x[i])
    return out


def rows_per_task(n: int) -> int:
    """Rows per iteration of a parallel loop that allocates scratch per iteration: up to 64,
    fewer when there are too few rows to give every thread several iterations. Rows are
    independent, so the split changes the speed, never the bits."""
    return max(1, min(64, n // (8 * numba.get_num_threads())))


def rows(x, d: int):
    """x as a C-contiguous (N, d) array (a view when it already is one)."""
    return np.ascontiguousarray(x).reshape(-1, d)


def float_dtype(*arrays):
    """The dtype the kernels run in and return: float32 or float64, the arrays' own. Any other
    (float16, long double, an integer) is refused, never computed in another precision."""
    dts = [np.dtype(a.dtype) for a in arrays if a is not None]
    for dt in dts:
        if dt not in (np.float32, np.float64):
            raise TypeError(f"the Numba kernels take float32 or float64 arrays, got dtype {dt}")
    return np.result_type(*dts)
