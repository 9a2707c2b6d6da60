"""LayerNorm forward/backward as numba-cuda kernels, in the input's dtype throughout.

Mirrors `nanonorm/ops/layernorm.py`: same arguments, same LayerNormCache, so a kernel forward
pairs with a reference backward and vice versa. One block per row in the forward; statistics
as the reference's `row_stats`: deviations from the row's first value d = x - x0 (exact near
x0: a constant row gives var = 0 and xhat = 0 exactly), their mean, then a second pass over
(d - mean(d))² — a true two-pass variance, never E[x²] - E[x]²; the sums are float32 pairs
(exact error terms, see _common), so float32 statistics are ~correctly rounded. Rows whose
sums overflow (|x| past ~1e19 in float32, ~1e154 in float64) take a rare branch with the
reference's power-of-two scaling, and x - mean is formed as x/2 - mean/2.
The backward (layernorm_bwd.py) keeps dγ/dβ in registers. A row stays in L1/L2 between the
passes, so DRAM sees
  LN fwd: read x, write y                      -> 2·N·C·itemsize bytes
  LN bwd: read x, dy; write dx                 -> 3·N·C·itemsize bytes (+ 4·G·C partials)
"""
from __future__ import annotations

import math

from numba import boolean, cuda, float64

from nanonorm.ops.layernorm import LayerNormCache
from ._common import (THREADS, acc_add, array_module, block_max, block_sum, float_dtype,
                      kernel, stream_for, threads_for)
from .layernorm_bwd import layer_norm_backward  # noqa: F401  (the op's pair, found here)


@cuda.jit(device=True)
def _deviation_stats(sa, se, x, i, inv):
    """(u0, mean(d), mean((d - mean(d))²)) of row i scaled by inv (a power of two: exact),
    u = x·inv, d = u - u0, u0 = u[0]. Sums as pairs (see _common): ~correctly rounded."""
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    zero, cf = x.dtype.type(0.0), x.dtype.type(c)
    u0 = x[i, 0] * inv
    s, e = zero, zero
    for j in range(t, c, nt):
        s, e = acc_add(s, e, x[i, j] * inv - u0)
    dm = block_sum(sa, se, s, e) / cf
    s, e = zero, zero
    for j in range(t, c, nt):
        u = (x[i, j] * inv - u0) - dm
        s, e = acc_add(s, e, u * u)
    return u0, dm, block_sum(sa, se, s, e) / cf


@cuda.jit(device=True)
def _scaled_stats(sa, se, x, i, eps):
    """(mean, rstd) of row i as `ops.layernorm.row_stats`: the row divided by a power of two
    near its largest |x| first, so no sum or square overflows (inf / NaN rows give NaN)."""
    t = cuda.threadIdx.x
    ft = x.dtype.type
    zero, one = ft(0.0), ft(1.0)
    a = zero
    for j in range(t, x.shape[1], cuda.blockDim.x):
        a = max(a, abs(x[i, j]))
    a = block_max(sa, a)
    if not math.isfinite(a):
        return ft(math.nan), ft(math.nan)
    _, e = math.frexp(max(a, one))                # max(a, 1) in [2^(e-1), 2^e)
    sc = ft(math.ldexp(one, e - 2))               # 2^(floor(log2 a) - 1), as the reference's
    inv = one / sc                                # exact: a power of two, normal
    u0, dm, var_u = _deviation_stats(sa, se, x, i, inv)
    std = math.sqrt(eps) if var_u == zero else sc * math.sqrt(var_u + eps * inv * inv)
    return sc * (u0 + dm), one / std


@kernel(lambda ft: (ft[:, ::1], ft[::1], ft[::1], boolean, boolean, float64,
                    ft[:, ::1], ft[:, ::1], ft[:, ::1]))
def _forward(x, w, b, has_w, has_b, eps, y, mean, rstd):
    # x, y: (N, C); w, b: (C,) (ignored unless has_w / has_b); mean, rstd: (N, 1); block i = row i
    sa = cuda.shared.array(THREADS, x.dtype)
    se = cuda.shared.array(THREADS, x.dtype)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    ft = x.dtype.type
    one, e = ft(1.0), ft(eps)
    u0, dm, var = _deviation_stats(sa, se, x, i, one)
    h = one                                       # x·h - m·h cannot overflow
    if math.isfinite(var):                        # the same for every thread of the block
        m = u0 + dm
        r = one / math.sqrt(var + e)
    else:                                         # the sums overflowed (or inf / NaN)
        m, r = _scaled_stats(sa, se, x, i, e)
        h = ft(0.5)
    if t == 0:
        mean[i, 0] = m
        rstd[i, 0] = r
    mh, rh = m * h, r / h
    for j in range(t, x.shape[1], cuda.blockDim.x):
        v = (x[i, j] * h - mh) * rh
        if has_w:
            v *= w[j]
        if has_b:
            v += b[j]
        y[i, j] = v


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    mod = array_module(x)
    d = math.prod(normalized_shape)
    dt = float_dtype(x, weight, bias)
    x2 = mod.ascontiguousarray(x, dtype=dt).reshape(-1, d)            # (N, C)
    n = x2.shape[0]
    w = None if weight is None else mod.ascontiguousarray(weight, dtype=dt).reshape(d)
    b = None if bias is None else mod.ascontiguousarray(bias, dtype=dt).reshape(d)
    dummy = mod.empty(0, dt)                      # stands in for an absent weight / bias
    y = mod.empty((n, d), dt)
    mean = mod.empty((n, 1), dt)
    rstd = mod.empty((n, 1), dt)
    if n:
        _forward[n, threads_for(d), stream_for(x2)](
            x2, dummy if w is None else w, dummy if b is None else b, w is not None,
            b is not None, float(eps), y, mean, rstd)
    cache = LayerNormCache(x2, mean, rstd, w, bias is not None, tuple(x.shape),
                           tuple(normalized_shape))
    return y.reshape(x.shape), cache
