"""softmax / log_softmax (with temperature) forward and backward as numba-cuda kernels.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache). The wrapper moves `axis` last; one block
per row takes three passes over it (max, Σexp, write), the row staying in L1/L2, so DRAM sees
  softmax fwd: read x, write y                 -> 2·N·C·itemsize bytes
  softmax bwd: read y, dy; write dx            -> 3·N·C·itemsize bytes
exp is recomputed in the write pass rather than stored and re-read. A row that is all -inf
gives zeros (log_softmax: -inf) and a finite gradient, as the reference.

The forward kernel also takes an optional causal mask (query i of T sees key j <= i + S - T),
so attention applies scale, mask and softmax to the scores in one pass (attention.py).
"""
from __future__ import annotations

import math

from numba import cuda, float64

from ...ops.softmax import SoftmaxCache
from ._common import THREADS, array_module, block_max, block_sum2, float_dtype, stream_for, \
    threads_for


@cuda.jit
def _forward(x, scale, causal, t_len, log, out):
    # x, out: (N, C); row i -> softmax(scale · x[i]) or its log. causal: row i is query
    # i % t_len of a (T, S = C) score matrix and key j is masked when j > i % t_len + C - t_len.
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = x.shape[1]
    sc = x.dtype.type(scale)                      # elementwise math in the input's dtype
    ninf = x.dtype.type(-math.inf)
    last = c                                      # keys j < last are visible
    if causal:
        last = min(c, i % t_len + c - t_len + 1)
    m = -math.inf
    for j in range(t, last, nt):
        m = max(m, x[i, j] * sc)
    m = block_max(sa, m)
    mt = x.dtype.type(m if math.isfinite(m) else 0.0)   # an all -inf row is shifted by 0
    s = 0.0
    for j in range(t, last, nt):
        s += math.exp(x[i, j] * sc - mt)
    s, _ = block_sum2(sa, sb, s, 0.0)
    if log:
        ls = math.log(s) if s > 0.0 else 0.0
        for j in range(t, c, nt):
            out[i, j] = (x[i, j] * sc - mt) - ls if j < last else ninf
    else:
        rs = 1.0 / s if s > 0.0 else 0.0
        for j in range(t, c, nt):
            out[i, j] = math.exp(x[i, j] * sc - mt) * rs if j < last else 0.0


@cuda.jit
def _backward(dy, y, inv_temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities)
    sa = cuda.shared.array(THREADS, float64)
    sb = cuda.shared.array(THREADS, float64)
    i = cuda.blockIdx.x
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    c = y.shape[1]
    s = 0.0
    for j in range(t, c, nt):
        s += dy[i, j] if log else dy[i, j] * y[i, j]
    s, _ = block_sum2(sa, sb, s, 0.0)
    for j in range(t, c, nt):
        if log:
            dx[i, j] = (dy[i, j] - math.exp(y[i, j]) * s) * inv_temperature
        else:
            dx[i, j] = y[i, j] * (dy[i, j] - s) * inv_temperature


def _rows_last(mod, x, axis, dt):
    """x with `axis` moved last, as a C-contiguous (N, C) array, and the moved shape."""
    xm = mod.moveaxis(x, axis, -1)
    return mod.ascontiguousarray(xm, dtype=dt).reshape(-1, xm.shape[-1]), xm.shape


def softmax_rows(x2, scale: float, log: bool, causal: bool = False, t_len: int = 1):
    """softmax (or log_softmax) of scale · x2 along the rows of a C-contiguous (N, C) array."""
    mod = array_module(x2)
    out = mod.empty_like(x2)
    n, c = x2.shape
    if n and c:
        _forward[n, threads_for(c), stream_for(x2)](x2, float(scale), causal, max(t_len, 1),
                                                    log, out)
    return out


def _forward_impl(x, axis, temperature, log):
    mod = array_module(x)
    x2, shape = _rows_last(mod, x, axis, float_dtype(x))             # (N, C)
    out = softmax_rows(x2, 1.0 / temperature, log)
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
        _backward[n, threads_for(c), stream_for(y2)](dy2, y2, 1.0 / cache.temperature, log, dx)
    return mod.moveaxis(dx.reshape(shape), -1, cache.axis)


def softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, False)


def softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, False)


def log_softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, True)


def log_softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, True)
