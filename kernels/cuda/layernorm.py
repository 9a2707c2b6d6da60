"""LayerNorm forward/backward as numba-cuda kernels: one block per row, shared-memory sums.

Mirrors `nanonorm/ops/layernorm.py`: same arguments, same LayerNormCache, so a kernel forward
pairs with a reference backward and vice versa. Statistics: a float64 mean, then one more pass
summing deviations from it and their squares (the mean correction makes constant rows exact,
and the variance never forms E[x²] - E[x]²). A row (C <= a few thousand) stays in L1/L2
between the passes, so DRAM sees:
  LN fwd: read x, write y                      -> 2·N·C·itemsize bytes
  LN bwd: read x, dy; write dx                 -> 3·N·C·itemsize bytes (+ the small partials)
dγ/dβ are race-free without atomics: block b owns row b of (G, C) float64 partials for the rows
b, b + G, b + 2G, ...; a second kernel sums the G partials of each column in a fixed order, so
results are deterministic for a given N.
Rows whose float64 sums overflow (float64 rows near ±1e308 or spreads past 1e154) take a rare
branch with the reference's scaled statistics, and x - mean is formed as x/2 - mean/2.
"""
from __future__ import annotations

import math

from numba import boolean, cuda, float64

from nanonorm.ops.layernorm import LayerNormCache
from ._common import (THREADS, array_module, block_max, block_sum2, float_dtype, grid_1d,
                      kernel, stream_for, threads_for)

# Blocks of the backward (and so rows of the dγ/dβ partials): enough to fill an H100's 132 SMs
# several times over, few enough that the (G, C) float64 partials stay L2-resident.
BWD_BLOCKS = 512


@cuda.jit(device=True)
def _robust_stats(sa, sb, x, i, eps):
    """(mean, rstd) of row i as `ops.layernorm.row_stats`: the row divided by a power of two
    near its largest |x| first, so no sum or square overflows (inf / NaN rows give NaN)."""
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    a = 0.0
    for j in range(t, c, nt):
        a = max(a, abs(x[i, j]))
    a = block_max(sa, a)
    if not math.isfinite(a):
        return math.nan, math.nan
    sc = 2.0 ** (math.floor(math.log2(max(a, 1.0))) - 1.0)
    u0 = x[i, 0] / sc
    sd = 0.0
    for j in range(t, c, nt):
        sd += x[i, j] / sc - u0
    sd, _ = block_sum2(sa, sb, sd, 0.0)
    dm = sd / c
    sv = 0.0
    for j in range(t, c, nt):
        u = (x[i, j] / sc - u0) - dm
        sv += u * u
    sv, _ = block_sum2(sa, sb, sv, 0.0)
    var_u = sv / c
    std = math.sqrt(eps) if var_u == 0.0 else sc * math.sqrt(var_u + eps / sc / sc)
    return sc * (u0 + dm), 1.0 / std


@kernel(lambda ft: (ft[:, ::1], ft[::1], ft[::1], boolean, boolean, float64,
                    ft[:, ::1], ft[:, ::1], ft[:, ::1]))
def _forward(x, w, b, has_w, has_b, eps, y, mean, rstd):
    # x, y: (N, C); w, b: (C,) (ignored unless has_w / has_b); mean, rstd: (N, 1); block i = row i
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    s = 0.0
    for j in range(t, c, nt):
        s += x[i, j]
    s, _ = block_sum2(sa, sb, s, 0.0)
    m0 = s / c
    s1 = 0.0
    s2 = 0.0
    for j in range(t, c, nt):
        d = x[i, j] - m0
        s1 += d
        s2 += d * d
    s1, s2 = block_sum2(sa, sb, s1, s2)
    h = 1.0                                       # x·h - m·h cannot overflow
    if math.isfinite(s) and math.isfinite(s2):    # the same for every thread of the block
        dm = s1 / c                               # mean correction, ~ rounding of m0
        m = m0 + dm
        r = 1.0 / math.sqrt(max(s2 / c - dm * dm, 0.0) + eps)
    else:                                         # float64 sums overflowed (or inf / NaN)
        m, r = _robust_stats(sa, sb, x, i, eps)
        h = 0.5
    if t == 0:
        mean[i, 0] = m
        rstd[i, 0] = r
    for j in range(t, c, nt):
        v = (x[i, j] * h - m * h) * (r / h)
        if has_w:
            v *= w[j]
        if has_b:
            v += b[j]
        y[i, j] = v


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[::1], boolean,
                    ft[:, ::1], float64[:, ::1], float64[:, ::1]))
def _backward(dy, x, mean, rstd, w, has_w, dx, dw_part, db_part):
    # dy, x, dx: (N, C); mean, rstd: (N, 1); dw_part, db_part: (G, C) float64, G = gridDim.x
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    blk = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    n, c = x.shape
    half, two = x.dtype.type(0.5), x.dtype.type(2.0)   # typed: float32 math stays float32
    for j in range(t, c, nt):                     # thread t alone touches columns t, t+nt, ...
        dw_part[blk, j] = 0.0
        db_part[blk, j] = 0.0
    for i in range(blk, n, cuda.gridDim.x):
        m = mean[i, 0]
        r = rstd[i, 0]
        mh, r2 = m * half, r * two                # (x/2 - m/2)·2r: x - m cannot overflow
        sg = 0.0
        sgx = 0.0
        for j in range(t, c, nt):
            xhat = (x[i, j] * half - mh) * r2
            g = dy[i, j] * w[j] if has_w else dy[i, j]
            sg += g
            sgx += g * xhat
            dw_part[blk, j] += dy[i, j] * xhat
            db_part[blk, j] += dy[i, j]
        sg, sgx = block_sum2(sa, sb, sg, sgx)
        a = sg / c
        bb = sgx / c
        for j in range(t, c, nt):
            xhat = (x[i, j] * half - mh) * r2
            g = dy[i, j] * w[j] if has_w else dy[i, j]
            dx[i, j] = r * (g - a - xhat * bb)


@kernel(lambda ft: (float64[:, ::1], ft[::1]))
def _sum_partials(part, out):
    # part: (G, C) -> out (C,): one thread per column, summed in block order (deterministic)
    for j in range(cuda.grid(1), part.shape[1], cuda.gridsize(1)):
        s = 0.0
        for k in range(part.shape[0]):
            s += part[k, j]
        out[j] = s


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


def layer_norm_backward(dy, cache: LayerNormCache):
    mod = array_module(dy)
    n, d = cache.x.shape
    dt = float_dtype(dy, cache.x)
    x2 = mod.ascontiguousarray(cache.x, dtype=dt)                      # (N, C)
    dy2 = mod.ascontiguousarray(dy, dtype=dt).reshape(n, d)            # (N, C)
    w = None if cache.weight is None else mod.ascontiguousarray(cache.weight, dtype=dt).reshape(d)
    mean = mod.ascontiguousarray(cache.mean, dtype=dt).reshape(n, 1)
    rstd = mod.ascontiguousarray(cache.rstd, dtype=dt).reshape(n, 1)
    dx = mod.empty((n, d), dt)
    g = max(1, min(n, BWD_BLOCKS))
    dw_part = mod.empty((g, d), mod.float64)                          # (G, C) partial sums
    db_part = mod.empty((g, d), mod.float64)
    stream = stream_for(dy2)
    if n:
        _backward[g, threads_for(d), stream](dy2, x2, mean, rstd,
                                             mod.empty(0, dt) if w is None else w,
                                             w is not None, dx, dw_part, db_part)
    else:                                         # no rows: the parameter grads are zeros
        dw_part[...] = 0.0
        db_part[...] = 0.0
    dw = db = None
    threads = threads_for(d)
    if w is not None:
        dw = mod.empty(d, dt)
        _sum_partials[grid_1d(d, threads), threads, stream](dw_part, dw)
        dw = dw.reshape(cache.param_shape)
    if cache.has_bias:
        db = mod.empty(d, dt)
        _sum_partials[grid_1d(d, threads), threads, stream](db_part, db)
        db = db.reshape(cache.param_shape)
    return dx.reshape(cache.x_shape), dw, db
