"""softmax / log_softmax (with temperature) forward and backward on NumPy arrays.

Mirrors `nanonorm/ops/softmax.py` (same SoftmaxCache: the output, the axis, the temperature). The
wrapper moves `axis` last; the kernel gives each thread chunks of rows, a row staying in L1 between
its passes (a vectorized max, z = (x - max)/T, exp: one pass at T = 1, a sum in a fixed order,
scale), so memory sees one read of x and one write of y: softmax fwd moves 2·N·C·itemsize bytes,
bwd 3·N·C·itemsize (read y, dy; write dx). The edges are the reference's: an all -inf row gives
zeros (log_softmax: -inf), a row holding NaN or +inf gives NaN, a tiny temperature the argmax, an
empty axis an empty result.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from nanonorm.ops.softmax import SoftmaxCache
from . import pool
from ._common import TASK_KERNEL, float_dtype, vexp
from .lanes import lane_dot, lane_max, lane_sum


def _forward(task, per, x, temperature, log, out, redo):
    # x, out: (N, C); row i -> softmax(x[i] / temperature) or its log; redo: (N,) set to 1
    # for a row where x - max overflowed with T > 1 (see _forward_exact); this task's rows
    # [task·per, (task + 1)·per) (any split gives the same bits: rows are independent)
    lo, hi = task * per, (task + 1) * per
    x, out, redo = x[lo:hi], out[lo:hi], redo[lo:hi]
    n, c = x.shape
    # typed: a float64 shift would send every exp down the scalar float64 path
    tem = x.dtype.type(temperature)
    one_t, small_t = temperature == 1.0, temperature < 1.0
    zero, ninf = x.dtype.type(0.0), x.dtype.type(-np.inf)
    ex = np.empty(c if log else 0, x.dtype)      # (C,) exp(z) of a log_softmax row
    for i in range(n):
        xi, oi = x[i], out[i]
        m = lane_max(xi, c, ninf)
        m = zero if m == ninf else m     # all -inf row: shift by 0; +inf / NaN: a NaN row
        # pass 2: z = (x - m) / T into out
        if one_t and not log:            # z and exp(z) in one pass (the common softmax)
            for j in range(c):
                oi[j] = vexp(xi[j] - m)
        elif one_t:
            for j in range(c):
                oi[j] = xi[j] - m
        elif small_t:                    # 0 / T = 0 even where T rounds to 0 in the dtype
            for j in range(c):
                d = xi[j] - m
                oi[j] = d if d == zero else d / tem
        else:
            # where x - max overflowed, x/T - max/T is finite: fast-math's reciprocal
            # could round it apart from the exact path, so such a row is flagged and
            # recomputed without fast-math
            over = False
            for j in range(c):
                xj = xi[j]
                d = xj - m
                bad = d == ninf and xj > ninf
                over = over or bad
                oi[j] = xj / tem - m / tem if bad else d / tem
            redo[i] = over
        # pass 3: exp(z), kept apart from z for log_softmax (two loops: one array each)
        if log:
            for j in range(c):
                ex[j] = vexp(oi[j])
            s = lane_sum(ex, 0, c)
            ls = x.dtype.type(math.log(s) if s != 0.0 else 0.0)   # NaN s -> NaN row
            for j in range(c):                                # s == 0: all -inf -> -inf
                oi[j] -= ls
        else:
            if not one_t:
                for j in range(c):
                    oi[j] = vexp(oi[j])
            s = lane_sum(oi, 0, c)
            r = x.dtype.type(1.0 / s) if s != 0.0 else zero       # NaN s -> NaN row
            for j in range(c):
                oi[j] = oi[j] * r


# the rare rows flagged by _forward, without fast-math (and without threads); not cached: one
# file's cache keeps one set of flags per function, and this compiles only when a row needs it
_forward_exact = njit(cache=False, error_model="numpy")(_forward)
_forward = njit(**TASK_KERNEL)(_forward)


@njit(**TASK_KERNEL)
def _backward(task, per, dy, y, temperature, log, dx):
    # dy, y, dx: (N, C); y is the forward's output (probabilities or log-probabilities); this
    # task's rows [task·per, (task + 1)·per)
    lo, hi = task * per, (task + 1) * per
    dy, y, dx = dy[lo:hi], y[lo:hi], dx[lo:hi]
    n, c = y.shape
    tem = y.dtype.type(temperature)
    small_t = temperature < 1.0
    zero = y.dtype.type(0.0)
    for i in range(n):
        di, yi, oi = dy[i], y[i], dx[i]
        if log:
            sd = y.dtype.type(lane_sum(di, 0, c))
            for j in range(c):
                oi[j] = di[j] - vexp(yi[j]) * sd
        else:
            sd = y.dtype.type(lane_dot(di, yi, 0, c))
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
        pool.run(_forward, *pool.tasks(*x2.shape), x2, float(temperature), log, out, redo)
        rows = np.flatnonzero(redo)
        if rows.size:                                               # rows spanning ±max
            part = np.empty((rows.size, x2.shape[1]), dt)
            _forward_exact(0, rows.size, np.ascontiguousarray(x2[rows]), float(temperature),
                           log, part, np.zeros(rows.size, np.bool_))
            out[rows] = part
    y = np.moveaxis(out.reshape(shape), -1, axis)
    return y, SoftmaxCache(y, axis, temperature)


def _backward_impl(dy, cache, log):
    dt = float_dtype(dy, cache.out)
    y2, shape = _rows_last(cache.out.astype(dt, copy=False), cache.axis)
    dy2, _ = _rows_last(dy.astype(dt, copy=False), cache.axis)
    dx = np.empty_like(y2)
    if y2.size:
        pool.run(_backward, *pool.tasks(*y2.shape), dy2, y2, float(cache.temperature), log, dx)
    return np.moveaxis(dx.reshape(shape), -1, cache.axis)


def softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, False)


def softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, False)


def log_softmax_forward(x, axis=-1, temperature=1.0):
    return _forward_impl(x, axis, temperature, True)


def log_softmax_backward(dy, cache: SoftmaxCache):
    return _backward_impl(dy, cache, True)
