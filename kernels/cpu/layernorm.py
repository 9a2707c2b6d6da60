"""LayerNorm forward/backward on NumPy arrays: one parallel loop over rows, fused.

Mirrors `nanonorm/ops/layernorm.py`: same arguments, same LayerNormCache, so a kernel forward
pairs with a reference backward and vice versa. A row (C <= a few thousand) sits in L1, so the
statistics take extra passes over it from cache while memory sees one read of x and one write
of y: LN fwd moves 2·N·C·itemsize bytes, LN bwd 3·N·C·itemsize (read x, dy; write dx).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ...ops.layernorm import LayerNormCache
from ._common import FASTMATH, float_dtype, rows

# Rows per partial of dγ/dβ: a fixed split (not one per thread) keeps the sums identical
# whatever the thread count.
CHUNK_ROWS = 64


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _forward(x, w, b, has_w, has_b, eps, y, mean, rstd):
    # x, y: (N, C); w, b: (C,) (ignored unless has_w / has_b); mean, rstd: (N, 1)
    n, c = x.shape
    for i in prange(n):
        row = x[i]
        s = 0.0                                   # float64 accumulators, even for float32 x
        for j in range(c):
            s += row[j]
        m0 = x.dtype.type(s / c)
        # one more pass for both the mean's correction and the variance, about the shift m0:
        # d = x - m0 is small next to x, so Σd² - (Σd)²/c does not cancel (exact 0 for a
        # constant row, where m0 is exact)
        s1 = 0.0
        s2 = 0.0
        for j in range(c):
            d = np.float64(row[j] - m0)
            s1 += d
            s2 += d * d
        dm = s1 / c
        m = x.dtype.type(m0 + dm)
        var = max(s2 / c - dm * dm, 0.0)
        r = x.dtype.type(1.0 / math.sqrt(var + eps))
        mean[i, 0] = m
        rstd[i, 0] = r
        yi = y[i]
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


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _backward(dy, x, mean, rstd, w, has_w, dx, dw_part, db_part, chunk):
    # dy, x, dx: (N, C); mean, rstd: (N, 1); dw_part, db_part: (N // chunk + 1, C) float64
    n, c = x.shape
    nchunks = dw_part.shape[0]
    for k in prange(nchunks):
        pw = dw_part[k]
        pb = db_part[k]
        pw[:] = 0.0
        pb[:] = 0.0
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            m = mean[i, 0]
            r = rstd[i, 0]
            xi, gi, dxi = x[i], dy[i], dx[i]
            sg = 0.0
            sgx = 0.0
            for j in range(c):
                xhat = (xi[j] - m) * r
                g = gi[j] * w[j] if has_w else gi[j]
                sg += g
                sgx += g * xhat
                pw[j] += gi[j] * xhat
                pb[j] += gi[j]
            a = x.dtype.type(sg / c)
            bb = x.dtype.type(sgx / c)
            for j in range(c):
                xhat = (xi[j] - m) * r
                g = gi[j] * w[j] if has_w else gi[j]
                dxi[j] = r * (g - a - xhat * bb)


@njit(parallel=True, cache=True)
def _sum_partials(part, out):
    # part: (K, C) -> out (C,), summed in chunk order for every column (deterministic)
    k, c = part.shape
    for j in prange(c):
        s = 0.0
        for i in range(k):
            s += part[i, j]
        out[j] = s


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
    _forward(x2, dummy if w is None else w, dummy if b is None else b, w is not None,
             b is not None, float(eps), y, mean, rstd)
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
    _backward(dy2, x2, mean, rstd, np.empty(0, dt) if w is None else w, w is not None,
              dx, dw_part, db_part, CHUNK_ROWS)
    dw = db = None
    if w is not None:
        dw = np.empty(d, np.float64)
        _sum_partials(dw_part, dw)
        dw = dw.astype(dt).reshape(cache.param_shape)
    if cache.has_bias:
        db = np.empty(d, np.float64)
        _sum_partials(db_part, db)
        db = db.astype(dt).reshape(cache.param_shape)
    return dx.reshape(cache.x_shape), dw, db
