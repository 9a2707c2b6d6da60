"""softmax / log_softmax (with temperature) forward and backward as numba-cuda kernels.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache). The wrapper moves `axis` last; one block
per row takes three passes over it (max, Σexp, write), the row staying in L1/L2, so DRAM sees
  softmax fwd: read x, write y                 -> 2·N·C·itemsize bytes
  softmax bwd: read y, dy; write dx            -> 3·N·C·itemsize bytes
exp is recomputed in the write pass rather than stored and re-read. The edges are the
reference's: an all -inf row gives zeros (log_softmax: -inf) and a finite gradient, a row
holding NaN or +inf NaN, a tiny temperature the argmax, an empty axis an empty result.

The forward kernel also takes an optional causal mask (query i of T sees key j <= i + S - T),
so attention applies scale, mask and softmax to the scores in one pass (attention.py).
"""
from __future__ import annotations

import math

from numba import boolean, cuda, float64, int64

from nanonorm.ops.softmax import SoftmaxCache
from ._common import THREADS, array_module, block_max, block_sum2, float_dtype, kernel, \
    stream_for, threads_for


@cuda.jit(device=True)
def _scaled(v, m, tem, small_t):
    """(v - m) / T <= 0 as in `ops.softmax.scaled_logits` (tem in v's dtype)."""
    d = v - m
    if small_t:
        return d if d == 0 else d / tem
    if d == -math.inf and v > -math.inf:
        return v / tem - m / tem
    return d / tem


@kernel(lambda ft: (ft[:, ::1], float64, float64, boolean, int64, boolean, ft[:, ::1]))
def _forward(x, scale, temperature, causal, t_len, log, out):
    # x, out: (N, C); row i -> softmax(scale · x[i] / temperature) or its log (attention
    # passes its scale with temperature 1, softmax its temperature with scale 1).
    # causal: row i is query i % t_len of a (T, S = C) score matrix and key j is masked when
    # j > i % t_len + C - t_len.
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    sc = x.dtype.type(scale)                      # elementwise math in the input's dtype
    tem = x.dtype.type(temperature)
    one_t, small_t = temperature == 1.0, temperature < 1.0
    ninf = x.dtype.type(-math.inf)
    last = c                                      # keys j < last are visible
    if causal:
        last = min(c, i % t_len + c - t_len + 1)
    m = -math.inf
    for j in range(t, last, nt):
        m = max(m, x[i, j] * sc)
    m = block_max(sa, m)
    # all -inf row: shift by 0. +inf stays (inf - inf = NaN), and a NaN entry, whether or
    # not the max kept it, makes the sum below NaN: a NaN row either way
    mt = x.dtype.type(0.0 if m == -math.inf else m)
    s = 0.0
    for j in range(t, last, nt):
        v = x[i, j] * sc
        s += math.exp(v - mt if one_t else _scaled(v, mt, tem, small_t))
    s, _ = block_sum2(sa, sb, s, 0.0)
    if log:
        ls = math.log(s) if s != 0.0 else 0.0     # NaN s: a NaN row
        for j in range(t, c, nt):
            v = x[i, j] * sc
            z = v - mt if one_t else _scaled(v, mt, tem, small_t)
            out[i, j] = z - ls if j < last else ninf
    else:
        rs = 1.0 / s if s != 0.0 else 0.0
        for j in range(t, c, nt):
            v = x[i, j] * sc
            z = v - mt if one_t else _scaled(v, mt, tem, small_t)
            out[i, j] = math.exp(z) * rs if j < last else 0.0


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], float64, boolean, ft[:, ::1]))
def _backward(dy, y, temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities)
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = y.shape[1]
    tem = y.dtype.type(temperature)
    small_t = temperature < 1.0
    s = 0.0
    for j in range(t, c, nt):
        s += dy[i, j] if log else dy[i, j] * y[i, j]
    s, _ = block_sum2(sa, sb, s, 0.0)
    sd = y.dtype.type(s)
    for j in range(t, c, nt):
        if log:
            g = dy[i, j] - math.exp(y[i, j]) * sd
        else:
            g = y[i, j] * (dy[i, j] - sd)
        # 0 / T = 0 even where T rounds to 0 in the dtype
        dx[i, j] = g if small_t and g == 0 else g / tem


def _rows_last(mod, x, axis, dt):
    """x with `axis` moved last, as a C-contiguous (N, C) array, and the moved shape."""
    xm = mod.moveaxis(x, axis, -1)
    return mod.ascontiguousarray(xm, dtype=dt).reshape(math.prod(xm.shape[:-1]), xm.shape[-1]), \
        xm.shape


def softmax_rows(x2, scale: float, log: bool, causal: bool = False, t_len: int = 1,
                 temperature: float = 1.0):
    """softmax (or log_softmax) of scale · x2 / temperature along the rows of a C-contiguous
    (N, C) array."""
    mod = array_module(x2)
    out = mod.empty_like(x2)
    n, c = x2.shape
    if n and c:
        _forward[n, threads_for(c), stream_for(x2)](x2, float(scale), float(temperature),
                                                    causal, max(t_len, 1), log, out)
    return out


def _forward_impl(x, axis, temperature, log):
    mod = array_module(x)
    x2, shape = _rows_last(mod, x, axis, float_dtype(x))             # (N, C)
    out = softmax_rows(x2, 1.0, log, temperature=temperature)
    y = mod.moveaxis(out.reshape(shape), -1, axis)
    return y, SoftmaxCache(y, axis, temperature)


def _backward_impl(dy, cache, log):
    mod = array_module(dy)
    dt = float_dtype(dy, cache.out)
    y2, shape = _rows_last(mod, cache.out, cache.axis, dt)            # (N, C)
    dy2, _ = _rows_last(mod, dy, cache.axis, dt)
    dx = mod.empty_like(y2)
    n, c = y2.shape
    if n and c:
        _backward[n, threads_for(c), stream_for(y2)](dy2, y2, float(cache.temperature), log,
                                                     dx)
    return mod.moveaxis(dx.reshape(shape), -1, cache.axis)


def softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, False)


def softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, False)


def log_softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, True)


def log_softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, True)
