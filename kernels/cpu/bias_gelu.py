"""gelu(x + bias) forward and backward on NumPy arrays, the bias added and summed in the pass.

Mirrors `nanonorm/ops/bias_gelu.py` (BiasGeluCache keeps x and bias); the GELU math is
kernels/cpu/gelu.py's, element for element. Tasks own blocks of rows; dbias is summed per task
in runs of FLUSH_ROWS rows in x's dtype, each run added to the task's float64 row, then the
task rows in task order (deterministic for a thread count).
  fwd: read x, write y                          -> 2·N·C·itemsize bytes
  bwd: read dy, x; write dx                     -> 3·N·C·itemsize bytes (+ tasks·C partials)
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from nanonorm.ops.bias_gelu import BiasGeluCache
from . import pool
from ._common import TASK_KERNEL, float_dtype
from .gelu import _consts, gelu_slope, gelu_value

# rows summed in the data's dtype before they join the float64 total: float32 adds vectorize,
# and 32 of them lose less than the reference's own row-after-row float32 sum of every row
FLUSH_ROWS = 32


@njit(**TASK_KERNEL)
def _forward(task, per, x, b, k, c, sat, y):
    # x, y: (N, C); b: (C,); this task's rows [task·per, (task + 1)·per)
    one = x.dtype.type(1.0)
    for r in range(task * per, min((task + 1) * per, x.shape[0])):
        xr, yr = x[r], y[r]
        for j in range(xr.shape[0]):
            yr[j] = gelu_value(xr[j] + b[j], k, c, sat, one)


@njit(**TASK_KERNEL)
def _backward(task, per, dy, x, b, k, c, sat, dx, partial):
    # dy, x, dx: (N, C); b: (C,); partial: (tasks, C) float64, this task's dbias row
    one = x.dtype.type(1.0)
    acc = np.zeros(x.shape[1], dtype=x.dtype)         # (C,) a short run of rows, in x's dtype
    lo, hi = task * per, min((task + 1) * per, x.shape[0])
    for r in range(lo, hi):
        xr, dyr, dxr = x[r], dy[r], dx[r]
        for j in range(xr.shape[0]):
            g = dyr[j] * gelu_slope(xr[j] + b[j], k, c, sat, one)
            dxr[j] = g
            acc[j] += g
        if (r - lo) % FLUSH_ROWS == FLUSH_ROWS - 1 or r == hi - 1:
            for j in range(acc.shape[0]):             # into float64 every FLUSH_ROWS rows
                partial[task, j] += acc[j]
                acc[j] = 0


def _rows(a, c: int, dt):
    n = math.prod(a.shape[:-1])                  # not -1: C may be 0
    return np.ascontiguousarray(a, dtype=dt).reshape(n, c)               # (N, C)


def bias_gelu_forward(x, bias):
    dt = float_dtype(x, bias)
    c = x.shape[-1]
    xf, b = _rows(x, c, dt), np.ascontiguousarray(bias, dtype=dt)
    y = np.empty_like(xf)
    pool.run(_forward, *pool.tasks(xf.shape[0], c), xf, b, *_consts(dt), y)
    return y.reshape(x.shape), BiasGeluCache(x, bias)


def bias_gelu_backward(dy, cache: BiasGeluCache):
    dt = float_dtype(dy, cache.x, cache.bias)
    c = cache.x.shape[-1]
    xf, dyf = _rows(cache.x, c, dt), _rows(dy, c, dt)
    b = np.ascontiguousarray(cache.bias, dtype=dt)
    dx = np.empty_like(xf)
    ntasks, per = pool.tasks(xf.shape[0], c)
    partial = np.zeros((max(ntasks, 1), c))                               # (tasks, C) float64
    pool.run(_backward, ntasks, per, dyf, xf, b, *_consts(dt), dx, partial)
    return dx.reshape(cache.x.shape), partial.sum(axis=0).astype(dt)
