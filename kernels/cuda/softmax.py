"""softmax / log_softmax (with temperature) forward and backward as numba-cuda kernels.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache). The wrapper moves `axis` last; one block
per row takes three passes over it (max, Σexp, write), the row staying in L1/L2, so DRAM sees
  softmax fwd: read x, write y                 -> 2·N·C·itemsize bytes
  softmax bwd: read y, dy; write dx            -> 3·N·C·itemsize bytes
exp is recomputed in the write pass rather than stored and re-read. Sums are pairs in the
input's dtype (`_common.acc_add`, `block_sum`): ~correctly rounded however long each thread's
chain (~200 terms for a 50257-wide row) and however much Σ dy·y cancels against dy.
The edges are the reference's: an all -inf row gives zeros (log_softmax: -inf) and a finite
gradient, a row holding NaN or +inf NaN, a tiny temperature the argmax, an empty axis an
empty result.

The forward kernel also takes an optional causal mask (query i of T sees key j <= i + S - T),
so attention applies scale, mask and softmax to the scores in one pass (attention.py).
"""
from __future__ import annotations

import math

from numba import boolean, cuda, float64, int64

from nanonorm.ops.softmax import SoftmaxCache
from ._common import (THREADS, acc_add, array_module, block_max, block_sum, float_dtype,
                      kernel, stream_for, threads_for)


@cuda.jit(device=True)
def _scaled(v, m, tem, small_t, zero, ninf):
    """(v - m) / T <= 0 as in `ops.softmax.scaled_logits` (tem, zero, ninf in v's dtype: no
    float64 constant in the comparisons)."""
    d = v - m
    if small_t:
        return d if d == zero else d / tem
    if d == ninf and v > ninf:
        return v / tem - m / tem
    return d / tem


@kernel(lambda ft: (ft[:, ::1], float64, float64, boolean, int64, boolean, ft[:, ::1]))
def _forward(x, scale, temperature, causal, t_len, log, out):
    # x, out: (N, C); row i -> softmax(scale · x[i] / temperature) or its log (attention
    # passes its scale with temperature 1, softmax its temperature with scale 1).
    # causal: row i is query i % t_len of a (T, S = C) score matrix and key j is masked when
    # j > i % t_len + C - t_len.
    sa = cuda.shared.array(THREADS, x.dtype)
    se = cuda.shared.array(THREADS, x.dtype)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    ft = x.dtype.type
    sc, tem = ft(scale), ft(temperature)          # all math in the input's dtype
    zero, one, ninf = ft(0.0), ft(1.0), ft(-math.inf)
    # T that rounds to 1 divides by 1 in the reference too
    one_t, small_t = tem == one, tem < one
    last = c                                      # keys j < last are visible
    if causal:
        last = min(c, i % t_len + c - t_len + 1)
    m = ninf
    for j in range(t, last, nt):
        m = max(m, x[i, j] * sc)
    m = block_max(sa, m)
    # all -inf row: shift by 0. +inf stays (inf - inf = NaN), and a NaN entry, whether or
    # not the max kept it, makes the sum below NaN: a NaN row either way
    mt = zero if m == ninf else m
    s, e = zero, zero                             # Σexp as a pair (see _common)
    for j in range(t, last, nt):
        v = x[i, j] * sc
        z = v - mt if one_t else _scaled(v, mt, tem, small_t, zero, ninf)
        s, e = acc_add(s, e, math.exp(z))
    s = block_sum(sa, se, s, e)
    if log:
        ls = math.log(s) if s != zero else zero   # NaN s: a NaN row
        for j in range(t, c, nt):
            v = x[i, j] * sc
            z = v - mt if one_t else _scaled(v, mt, tem, small_t, zero, ninf)
            out[i, j] = z - ls if j < last else ninf
    else:
        live = s != zero                          # all -inf row: zeros, not 0 / 0
        for j in range(t, c, nt):
            v = x[i, j] * sc
            z = v - mt if one_t else _scaled(v, mt, tem, small_t, zero, ninf)
            # a division, as the reference: one rounding (exp · 1/s would take two)
            out[i, j] = math.exp(z) / s if j < last and live else zero


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], float64, boolean, ft[:, ::1]))
def _backward(dy, y, temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities)
    sa = cuda.shared.array(THREADS, y.dtype)
    se = cuda.shared.array(THREADS, y.dtype)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = y.shape[1]
    zero, tem = y.dtype.type(0.0), y.dtype.type(temperature)
    small_t = tem < y.dtype.type(1.0)
    s, e = zero, zero                             # Σdy·y (Σdy) as a pair: dy - Σ cancels
    for j in range(t, c, nt):
        s, e = acc_add(s, e, dy[i, j] if log else dy[i, j] * y[i, j])
    sd = block_sum(sa, se, s, e)
    for j in range(t, c, nt):
        if log:
            g = dy[i, j] - math.exp(y[i, j]) * sd
        else:
            g = y[i, j] * (dy[i, j] - sd)
        # 0 / T = 0 even where T rounds to 0 in the dtype
        dx[i, j] = g if small_t and g == zero else g / tem


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
