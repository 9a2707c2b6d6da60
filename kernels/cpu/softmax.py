"""softmax / log_softmax (with temperature) forward and backward on NumPy arrays.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache: the output, the axis, the temperature).
The wrapper moves `axis` last; the kernel runs one row per iteration of a parallel loop, the
row staying in L1 between its passes (max, exp + sum, scale), so memory sees one read of x and
one write of y: softmax fwd moves 2·N·C·itemsize bytes, bwd 3·N·C·itemsize (read y, dy;
write dx). The edges are the reference's: an all -inf row gives zeros (log_softmax: -inf), a
row holding NaN or +inf gives NaN, a tiny temperature the argmax, an empty axis an empty result.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...ops.softmax import SoftmaxCache
from ._common import FASTMATH, float_dtype, row_max, vexp


def _forward(x, temperature, log, out, redo):
    # x, out: (N, C); row i -> softmax(x[i] / temperature) or its log; redo: (N,) set to 1
    # for a row where x - max overflowed with T > 1 (see _forward_exact)
    n, c = x.shape
    # typed: a float64 shift would send every exp down the scalar float64 path
    tem = x.dtype.type(temperature)
    one_t, small_t = temperature == 1.0, temperature < 1.0
    zero, ninf = x.dtype.type(0.0), x.dtype.type(-np.inf)
    for i in prange(n):
        xi, oi = x[i], out[i]
        m = row_max(xi, c, ninf)
        m = zero if m == ninf else m     # all -inf row: shift by 0; +inf / NaN: a NaN row
        s = 0.0
        # pass 2 stores z = (x - m) / T (log) or exp(z); each value rounds once, so no
        # reassociation can form m + log s (at the ulp of m) in pass 3
        if one_t and log:
            for j in range(c):
                d = xi[j] - m
                oi[j] = d
                s += vexp(d)
        elif one_t:
            for j in range(c):
                e = vexp(xi[j] - m)
                oi[j] = e
                s += e
        elif small_t:                    # 0 / T = 0 even where T rounds to 0 in the dtype
            for j in range(c):
                d = xi[j] - m
                z = d if d == zero else d / tem
                e = vexp(z)
                oi[j] = z if log else e
                s += e
        else:
            # where x - max overflowed, x/T - max/T is finite: fast-math would factor it back
            # into (x - max)/T, so such a row is flagged and recomputed without it
            over = False
            for j in range(c):
                xj = xi[j]
                d = xj - m
                bad = d == ninf and xj > ninf
                over = over or bad
                z = xj / tem - m / tem if bad else d / tem
                e = vexp(z)
                oi[j] = z if log else e
                s += e
            redo[i] = over
        if log:                                            # s == 0: all -inf row -> -inf
            ls = x.dtype.type(math.log(s) if s != 0.0 else 0.0)   # NaN s -> NaN row
            for j in range(c):
                oi[j] -= ls
        else:
            r = x.dtype.type(1.0 / s) if s != 0.0 else zero       # NaN s -> NaN row
            for j in range(c):
                oi[j] = oi[j] * r


# the rare rows flagged by _forward, without fast-math (and without threads); not cached: one
# file's cache keeps one set of flags per function, and this compiles only when a row needs it
_forward_exact = njit(cache=False)(_forward)
_forward = njit(parallel=True, cache=True, fastmath=FASTMATH)(_forward)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _backward(dy, y, temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities)
    n, c = y.shape
    tem = y.dtype.type(temperature)
    small_t = temperature < 1.0
    zero = y.dtype.type(0.0)
    for i in prange(n):
        di, yi, oi = dy[i], y[i], dx[i]
        s = 0.0
        if log:
            for j in range(c):
                s += di[j]
            sd = y.dtype.type(s)
            for j in range(c):
                oi[j] = di[j] - vexp(yi[j]) * sd
        else:
            for j in range(c):
                s += di[j] * yi[j]
            sd = y.dtype.type(s)
            for j in range(c):
                oi[j] = yi[j] * (di[j] - sd)
        if small_t:                      # 0 / T = 0 even where T rounds to 0 in the dtype
            for j in range(c):
                g = oi[j]
                oi[j] = g if g == zero else g / tem
        elif temperature != 1.0:
            for j in range(c):
                oi[j] = oi[j] / tem


def _rows_last(x, axis):
    """x with `axis` moved last, as a C-contiguous (N, C) array, and the moved shape."""
    xm = np.moveaxis(x, axis, -1)
    return np.ascontiguousarray(xm).reshape(math.prod(xm.shape[:-1]), xm.shape[-1]), xm.shape


def _forward_impl(x, axis, temperature, log):
    dt = float_dtype(x)
    x2, shape = _rows_last(x.astype(dt, copy=False), axis)          # (N, C)
    out = np.empty_like(x2)
    if x2.size:
        redo = np.zeros(x2.shape[0], np.bool_)
        _forward(x2, float(temperature), log, out, redo)
        rows = np.flatnonzero(redo)
        if rows.size:                                               # rows spanning ±max
            part = np.empty((rows.size, x2.shape[1]), dt)
            _forward_exact(np.ascontiguousarray(x2[rows]), float(temperature), log, part,
                           np.zeros(rows.size, np.bool_))
            out[rows] = part
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
