"""LayerNorm forward/backward on NumPy arrays: one parallel loop over rows, fused.

Mirrors `nanonorm/ops/layernorm.py`: same arguments, same LayerNormCache, so a kernel forward
pairs with a reference backward and vice versa. A row (C <= a few thousand) sits in L1, so the
statistics take extra passes over it from cache while memory sees one read of x and one write
of y: LN fwd moves 2·N·C·itemsize bytes, LN bwd 3·N·C·itemsize (read x, dy; write dx).
Rows whose fast statistics overflow (float64 rows near ±1e308, spreads past 1e154; float32
spreads near ±3e38) are flagged and redone afterwards, without fast-math, with the reference's
scaled statistics: ordinary rows pay one comparison.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from nanonorm.ops.layernorm import LayerNormCache
from . import pool
from ._common import TASK_KERNEL, float_dtype, rows
from .lanes import lane_moments, lane_sum, lane_sum_dot

# Rows per partial of dγ/dβ: a fixed split (not one per thread) keeps the sums identical
# whatever the thread count.
CHUNK_ROWS = 64


@njit(**TASK_KERNEL)
def _forward(task, per, x, w, b, has_w, has_b, eps, var_limit, y, mean, rstd, rare):
    # x, y: (N, C); w, b: (C,) (ignored unless has_w / has_b); mean, rstd: (N, 1);
    # var_limit: c·var above it, x - mean could overflow the dtype (a float64 scalar);
    # rare: (N,) set for the rows left to _rare_forward (their y, mean, rstd are not written);
    # this task's rows [task·per, (task + 1)·per)
    lo, hi = task * per, (task + 1) * per
    x, y, mean, rstd, rare = x[lo:hi], y[lo:hi], mean[lo:hi], rstd[lo:hi], rare[lo:hi]
    n, c = x.shape
    for i in range(n):
        row, yi = x[i], y[i]
        s = lane_sum(row, 0, c)                   # float64 sums, even for float32 x
        m0 = x.dtype.type(s / c)
        # one more pass for both the mean's correction and the variance, about the shift m0:
        # d = x - m0 is small next to x, so Σd² - (Σd)²/c does not cancel (exact 0 for a
        # constant row, where m0 is exact)
        s1, s2 = lane_moments(row, m0, 0, c)
        dm = s1 / c
        var = max(s2 / c - dm * dm, 0.0)
        if not (math.isfinite(s) and math.isfinite(s2) and var * c <= var_limit):
            rare[i] = True                        # a sum or x - mean would overflow
            continue
        m = x.dtype.type(m0 + dm)
        r = x.dtype.type(1.0 / math.sqrt(var + eps))
        mean[i, 0] = m
        rstd[i, 0] = r
        if has_w and has_b:
            for j in range(c):
                yi[j] = (row[j] - m) * r * w[j] + b[j]
        elif has_w:
            for j in range(c):
                yi[j] = (row[j] - m) * r * w[j]
        elif has_b:
            for j in range(c):
                yi[j] = (row[j] - m) * r + b[j]
        else:
            for j in range(c):
                yi[j] = (row[j] - m) * r


# The rare rows, in plain IEEE arithmetic (no fast-math flags): the overflow-safe forms below
# (x/2 - m/2, sums of x/s) must be evaluated exactly as written.

@njit(cache=True)
def _robust_stats(row, eps):
    """(mean, rstd) in float64 as `ops.layernorm.row_stats`: the row divided by a power of two
    near its largest |x| first, so no sum or square overflows (inf / NaN rows give NaN)."""
    c = row.shape[0]
    a = 0.0
    for j in range(c):
        a = max(a, abs(np.float64(row[j])))
    if not math.isfinite(a):
        return np.nan, np.nan
    sc = 2.0 ** (math.floor(math.log2(max(a, 1.0))) - 1.0)
    u0 = row[0] / sc
    sd = 0.0
    for j in range(c):
        sd += row[j] / sc - u0
    dm = sd / c
    sv = 0.0
    for j in range(c):
        t = (row[j] / sc - u0) - dm
        sv += t * t
    var_u = sv / c
    std = math.sqrt(eps) if var_u == 0.0 else sc * math.sqrt(var_u + eps / sc / sc)
    return sc * (u0 + dm), 1.0 / std


@njit(cache=True)
def _rare_forward(x, w, b, has_w, has_b, eps, y, mean, rstd):
    # as _forward, for rows whose statistics overflow: x - mean formed as x/2 - mean/2
    n, c = x.shape
    half, two = x.dtype.type(0.5), x.dtype.type(2.0)
    for i in range(n):
        fm, fr = _robust_stats(x[i], eps)
        m, r = x.dtype.type(fm), x.dtype.type(fr)
        mean[i, 0] = m
        rstd[i, 0] = r
        for j in range(c):                        # ops.layernorm.normalise
            v = (x[i, j] * half - m * half) * (r * two)
            if has_w:
                v = v * w[j]
            if has_b:
                v = v + b[j]
            y[i, j] = v


@njit(**TASK_KERNEL)
def _backward(task, per, dy, x, mean, rstd, w, has_w, dx, dw_part, db_part, chunk, rstd_limit,
              rare):
    # dy, x, dx: (N, C); mean, rstd: (N, 1); dw_part, db_part: (N // chunk + 1, C) float64;
    # rstd_limit: below it, x - mean could overflow (|x - mean| <= sqrt(C) / rstd): such a row
    # is flagged in rare (N,) and left to _rare_backward; this task's chunks of rows
    # [task·per, (task + 1)·per)
    n, c = x.shape
    for k in range(task * per, min(dw_part.shape[0], (task + 1) * per)):
        pw = dw_part[k]
        pb = db_part[k]
        pw[:] = 0.0
        pb[:] = 0.0
        g = np.empty(c, x.dtype)                  # (C,) dy·w of one row
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            m = mean[i, 0]
            r = rstd[i, 0]
            if r < rstd_limit:
                rare[i] = True
                continue
            xi, gi, dxi = x[i], dy[i], dx[i]
            for j in range(c):                    # dx holds xhat until the last pass
                xhat = (xi[j] - m) * r
                dxi[j] = xhat
                g[j] = gi[j] * w[j] if has_w else gi[j]
                pw[j] += gi[j] * xhat
                pb[j] += gi[j]
            sg, sgx = lane_sum_dot(g, dxi, 0, c)
            a = x.dtype.type(sg / c)
            bb = x.dtype.type(sgx / c)
            for j in range(c):
                dxi[j] = r * (g[j] - a - dxi[j] * bb)


@njit(cache=True)
def _rare_backward(dy, x, mean, rstd, w, has_w, dx, pw, pb):
    # as _backward for the flagged rows, xhat = (x/2 - mean/2)·2rstd; pw, pb: (C,) float64
    n, c = x.shape
    half, two = x.dtype.type(0.5), x.dtype.type(2.0)
    pw[:] = 0.0
    pb[:] = 0.0
    for i in range(n):
        mh, r = mean[i, 0] * half, rstd[i, 0]
        r2 = r * two
        sg = 0.0
        sgx = 0.0
        for j in range(c):
            xhat = (x[i, j] * half - mh) * r2
            g = dy[i, j] * w[j] if has_w else dy[i, j]
            sg += g
            sgx += g * xhat
            pw[j] += dy[i, j] * xhat
            pb[j] += dy[i, j]
        a = x.dtype.type(sg / c)
        bb = x.dtype.type(sgx / c)
        for j in range(c):
            xhat = (x[i, j] * half - mh) * r2
            g = dy[i, j] * w[j] if has_w else dy[i, j]
            dx[i, j] = r * (g - a - xhat * bb)


@njit(nogil=True, cache=True, error_model="numpy")
def _sum_partials(task, per, part, out):
    # part: (K, C) -> out (C,), summed in chunk order for every column (deterministic); this
    # task's columns [task·per, (task + 1)·per)
    lo, hi = task * per, (task + 1) * per
    part, out = part[:, lo:hi], out[lo:hi]
    out[:] = 0.0
    for i in range(part.shape[0]):
        row = part[i]
        for j in range(out.shape[0]):
            out[j] += row[j]


def _var_limit(dt) -> float:
    """c·var at most this: every |x - mean| <= max/4, so x - mean cannot overflow dt (inf for
    float64, whose overflows show as non-finite float64 sums instead)."""
    return (float(np.finfo(dt).max) / 4.0) ** 2 if dt == np.float32 else math.inf


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    d = math.prod(normalized_shape)
    dt = float_dtype(x, weight, bias)
    x2 = rows(x.astype(dt, copy=False), d)                            # (N, C)
    n = x2.shape[0]
    w = None if weight is None else np.ascontiguousarray(weight, dtype=dt).reshape(d)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=dt).reshape(d)
    dummy = np.empty(0, dt)
    y = np.empty((n, d), dt)
    mean = np.empty((n, 1), dt)
    rstd = np.empty((n, 1), dt)
    args = (dummy if w is None else w, dummy if b is None else b, w is not None, b is not None,
            float(eps))
    rare = np.zeros(n, np.bool_)
    pool.run(_forward, *pool.tasks(n, d), x2, *args, _var_limit(dt), y, mean, rstd, rare)
    idx = np.flatnonzero(rare)
    if idx.size:                                  # rows whose statistics overflowed
        part = [np.empty((idx.size, k), dt) for k in (d, 1, 1)]
        _rare_forward(np.ascontiguousarray(x2[idx]), *args, *part)
        y[idx], mean[idx], rstd[idx] = part
    cache = LayerNormCache(x2, mean, rstd, w, bias is not None, tuple(x.shape),
                           tuple(normalized_shape))
    return y.reshape(x.shape), cache


def layer_norm_backward(dy, cache: LayerNormCache):
    x2 = np.ascontiguousarray(cache.x)
    n, d = x2.shape
    dt = float_dtype(dy, x2)
    x2 = x2.astype(dt, copy=False)
    dy2 = rows(dy.astype(dt, copy=False), d)                          # (N, C)
    w = None if cache.weight is None else np.ascontiguousarray(cache.weight, dtype=dt).reshape(d)
    mean = np.ascontiguousarray(cache.mean, dtype=dt).reshape(n, 1)
    rstd = np.ascontiguousarray(cache.rstd, dtype=dt).reshape(n, 1)
    dx = np.empty((n, d), dt)
    nchunks = max(1, -(-n // CHUNK_ROWS))
    dw_part = np.empty((nchunks, d), np.float64)                      # (K, C) partial sums
    db_part = np.empty((nchunks, d), np.float64)
    wk = np.empty(0, dt) if w is None else w
    rare = np.zeros(n, np.bool_)
    pool.run(_backward, *pool.tasks(nchunks, CHUNK_ROWS * d), dy2, x2, mean, rstd, wk,
             w is not None, dx, dw_part, db_part, CHUNK_ROWS,
             dt.type(2.0 * math.sqrt(d) / np.finfo(dt).max), rare)
    idx = np.flatnonzero(rare)
    if idx.size:                                  # rows where x - mean could overflow
        rare_dx = np.empty((idx.size, d), dt)
        rare_part = np.empty((2, d), np.float64)
        _rare_backward(np.ascontiguousarray(dy2[idx]), np.ascontiguousarray(x2[idx]),
                       mean[idx], rstd[idx], wk, w is not None, rare_dx, rare_part[0],
                       rare_part[1])
        dx[idx] = rare_dx
        dw_part = np.concatenate([dw_part, rare_part[:1]])
        db_part = np.concatenate([db_part, rare_part[1:]])
    dw = db = None
    if w is not None:
        dw = np.empty(d, np.float64)
        pool.run(_sum_partials, *pool.tasks(d, dw_part.shape[0]), dw_part, dw)
        dw = dw.astype(dt).reshape(cache.param_shape)
    if cache.has_bias:
        db = np.empty(d, np.float64)
        pool.run(_sum_partials, *pool.tasks(d, db_part.shape[0]), db_part, db)
        db = db.astype(dt).reshape(cache.param_shape)
    return dx.reshape(cache.x_shape), dw, db
