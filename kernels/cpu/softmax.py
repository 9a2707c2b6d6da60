"""softmax / log_softmax (with temperature) forward and backward on NumPy arrays.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache: the output, the axis, the temperature).
The wrapper moves `axis` last; the kernel runs one row per iteration of a parallel loop, the
row staying in L1 between its passes (max, exp + sum, scale), so memory sees one read of x and
one write of y: softmax fwd moves 2·N·C·itemsize bytes, bwd 3·N·C·itemsize (read y, dy;
write dx). A row that is all -inf gives zeros (log_softmax: -inf), as the reference.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...ops.softmax import SoftmaxCache
from ._common import FASTMATH, diff_add, float_dtype, row_max, vexp


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _forward(x, temperature, log, out):
    # x, out: (N, C); row i -> softmax(x[i] / temperature) or its log
    n, c = x.shape
    # typed: a float64 shift would send every exp down the scalar float64 path
    inv = x.dtype.type(1.0 if temperature == 1.0 else 1.0 / temperature)
    tem = x.dtype.type(temperature)
    for i in prange(n):
        xi, oi = x[i], out[i]
        zero = x.dtype.type(0.0)
        m = row_max(xi, c, x.dtype.type(-np.inf))
        m = m * inv if math.isfinite(m) else zero   # all -inf row: shift by 0 (as reference)
        s = 0.0
        if temperature == 1.0:
            for j in range(c):
                e = vexp(xi[j] - m)
                oi[j] = e
                s += e
        else:
            for j in range(c):
                e = vexp(xi[j] / tem - m)
                oi[j] = e
                s += e
        if log:
            ls = x.dtype.type(math.log(s) if s > 0.0 else 0.0)
            for j in range(c):
                z = xi[j] if temperature == 1.0 else xi[j] / tem
                oi[j] = diff_add(z, m, -ls)               # (z - m) - log s, as the reference
        else:
            r = x.dtype.type(1.0 / s) if s > 0.0 else zero
            for j in range(c):
                oi[j] = oi[j] * r


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _backward(dy, y, temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities)
    n, c = y.shape
    tem = y.dtype.type(temperature)
    for i in prange(n):
        di, yi, oi = dy[i], y[i], dx[i]
        s = 0.0
        if log:
            for j in range(c):
                s += di[j]
            sd = y.dtype.type(s)
            for j in range(c):
                oi[j] = (di[j] - vexp(yi[j]) * sd) / tem
        else:
            for j in range(c):
                s += di[j] * yi[j]
            sd = y.dtype.type(s)
            for j in range(c):
                oi[j] = yi[j] * (di[j] - sd) / tem


def _rows_last(x, axis):
    """x with `axis` moved last, as a C-contiguous (N, C) array, and the moved shape."""
    xm = np.moveaxis(x, axis, -1)
    return np.ascontiguousarray(xm).reshape(-1, xm.shape[-1] if xm.ndim else 1), xm.shape


def _forward_impl(x, axis, temperature, log):
    dt = float_dtype(x)
    x2, shape = _rows_last(x.astype(dt, copy=False), axis)          # (N, C)
    out = np.empty_like(x2)
    if x2.size:
        _forward(x2, float(temperature), log, out)
    y = np.moveaxis(out.reshape(shape), -1, axis)
    return y, SoftmaxCache(y, axis, temperature)


def _backward_impl(dy, cache, log):
    dt = float_dtype(dy, cache.out)
    y2, shape = _rows_last(cache.out.astype(dt, copy=False), cache.axis)
    dy2, _ = _rows_last(dy.astype(dt, copy=False), cache.axis)
    dx = np.empty_like(y2)
    if y2.size:
        _backward(dy2, y2, float(cache.temperature), log, dx)
    return np.moveaxis(dx.reshape(shape), -1, cache.axis)


def softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, False)


def softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, False)


def log_softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, True)


def log_softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, True)
