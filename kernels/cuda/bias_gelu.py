"""gelu(x + bias) forward and backward as numba-cuda kernels, the bias added where x is read and
dbias summed where dx is written.

Mirrors `nanonorm/ops/bias_gelu.py` (BiasGeluCache keeps x and bias); the GELU math is
gelu_math's, shared with the GELU kernels.
  fwd: grid-stride over N·C, read x (+ bias), write y         -> 2·N·C·itemsize bytes
  bwd: blocks of (THREADS columns) × (one of G row groups): each thread walks its column down
       the group's rows (coalesced across the block), writes dx and one dbias partial;
       the (G, C) partials are summed by CuPy in a fixed order -> 3·N·C·itemsize bytes
Partial sums are _common's compensated pairs in the data's dtype: float32 stays float32.
"""
from __future__ import annotations

import math

from numba import cuda, float64

from nanonorm.ops.bias_gelu import BiasGeluCache
from nanonorm.ops.gelu import GELU_COEF, SQRT_2_OVER_PI, TANH_SATURATION
from ._common import (THREADS, acc_add, acc_total, array_module, float_dtype, grid_1d, kernel,
                      simulator, stream_for, threads_for)
from .gelu_math import gelu_slope, gelu_value

ROW_GROUPS = 64          # dbias partial rows: blocks enough to fill a GPU at C = 3072
SIM_ROW_GROUPS = 3       # under the simulator: still several groups, few threads


@kernel(lambda ft: (ft[:, ::1], ft[::1], float64, float64, float64, ft[:, ::1]))
def _forward(x, b, k0, k1, sat, y):
    # x, y: (N, C); b: (C,)
    dt = x.dtype.type
    c0, c1, cs, half, one = dt(k0), dt(k1), dt(sat), dt(0.5), dt(1.0)
    n, c = x.shape
    for i in range(cuda.grid(1), n * c, cuda.gridsize(1)):
        r, j = i // c, i % c
        y[r, j] = gelu_value(x[r, j] + b[j], c0, c1, cs, half, one)


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], ft[::1], float64, float64, float64, ft[:, ::1],
                    ft[:, ::1]))
def _backward(dy, x, b, k0, k1, sat, dx, partial):
    # dy, x, dx: (N, C); b: (C,); partial: (G, C), row g from row group g = blockIdx.y
    dt = x.dtype.type
    c0, c1, cs, half, one = dt(k0), dt(k1), dt(sat), dt(0.5), dt(1.0)
    n, c = x.shape
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    g, groups = cuda.blockIdx.y, cuda.gridDim.y
    if j < c:
        s, e = one - one, one - one               # the column's dbias as a pair (_common)
        bj = b[j]
        for r in range(g, n, groups):
            d = dy[r, j] * gelu_slope(x[r, j] + bj, c0, c1, cs, half, one)
            dx[r, j] = d
            s, e = acc_add(s, e, d)
        partial[g, j] = acc_total(s, e)


def _rows(mod, a, dt):
    n = math.prod(a.shape[:-1])                  # not -1: C may be 0
    return mod.ascontiguousarray(a, dtype=dt).reshape(n, a.shape[-1])   # (N, C)


def bias_gelu_forward(x, bias):
    mod = array_module(x)
    dt = float_dtype(x, bias)
    xf, b = _rows(mod, x, dt), mod.ascontiguousarray(bias, dtype=dt)
    y = mod.empty_like(xf)
    threads = threads_for(THREADS)
    if xf.size:
        _forward[grid_1d(xf.size, threads), threads, stream_for(xf)](
            xf, b, SQRT_2_OVER_PI, GELU_COEF, TANH_SATURATION, y)
    return y.reshape(x.shape), BiasGeluCache(x, bias)


def bias_gelu_backward(dy, cache: BiasGeluCache):
    mod = array_module(dy)
    dt = float_dtype(dy, cache.x, cache.bias)
    xf, dyf = _rows(mod, cache.x, dt), _rows(mod, dy, dt)
    b = mod.ascontiguousarray(cache.bias, dtype=dt)
    n, c = xf.shape
    groups = max(1, min(n, SIM_ROW_GROUPS if simulator() else ROW_GROUPS))
    dx = mod.empty_like(xf)
    partial = mod.zeros((groups, c), dtype=dt)                          # (G, C)
    threads = threads_for(c)
    if xf.size:
        _backward[(-(-c // threads), groups), threads, stream_for(xf)](
            dyf, xf, b, SQRT_2_OVER_PI, GELU_COEF, TANH_SATURATION, dx, partial)
    return dx.reshape(cache.x.shape), partial.sum(axis=0)
