"""GELU (tanh approximation) forward and backward as elementwise numba-cuda kernels.

Mirrors `nanonorm/ops/gelu.py` (GeluCache keeps x; the backward recomputes tanh), edges
included: ±inf take GELU's limits (+inf, 0; gradients 1, 0), NaN gives NaN. Grid-stride
loops over the flattened array; the math of one element is gelu_math's, in the input's
dtype (tanhf for float32):
  GELU fwd: read x, write y                    -> 2·N·itemsize bytes
  GELU bwd: read x, dy; write dx               -> 3·N·itemsize bytes
"""
from __future__ import annotations

from numba import cuda, float64

from nanonorm.ops.gelu import GELU_COEF, SQRT_2_OVER_PI, TANH_SATURATION, GeluCache
from ._common import THREADS, array_module, float_dtype, grid_1d, kernel, stream_for, threads_for
from .gelu_math import gelu_slope, gelu_value


@kernel(lambda ft: (ft[::1], float64, float64, float64, ft[::1]))
def _forward(x, k0, k1, sat, y):
    # x, y: (N,) flat; k0 = sqrt(2/π), k1 = 0.044715, sat: |x| past which tanh is ±1
    dt = x.dtype.type
    c0, c1, cs, half, one = dt(k0), dt(k1), dt(sat), dt(0.5), dt(1.0)   # in x's dtype
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        y[i] = gelu_value(x[i], c0, c1, cs, half, one)


@kernel(lambda ft: (ft[::1], ft[::1], float64, float64, float64, ft[::1]))
def _backward(dy, x, k0, k1, sat, dx):
    # dy, x, dx: (N,) flat
    dt = x.dtype.type
    c0, c1, cs, half, one = dt(k0), dt(k1), dt(sat), dt(0.5), dt(1.0)
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        dx[i] = dy[i] * gelu_slope(x[i], c0, c1, cs, half, one)


def gelu_forward(x):
    mod = array_module(x)
    xf = mod.ascontiguousarray(x, dtype=float_dtype(x)).reshape(-1)   # (N,)
    y = mod.empty_like(xf)
    threads = threads_for(THREADS)
    if xf.size:
        _forward[grid_1d(xf.size, threads), threads, stream_for(xf)](
            xf, SQRT_2_OVER_PI, GELU_COEF, TANH_SATURATION, y)
    return y.reshape(x.shape), GeluCache(x)


def gelu_backward(dy, cache: GeluCache):
    mod = array_module(dy)
    dt = float_dtype(dy, cache.x)
    xf = mod.ascontiguousarray(cache.x, dtype=dt).reshape(-1)         # (N,)
    dyf = mod.ascontiguousarray(dy, dtype=dt).reshape(-1)
    dx = mod.empty_like(xf)
    threads = threads_for(THREADS)
    if xf.size:
        _backward[grid_1d(xf.size, threads), threads, stream_for(xf)](
            dyf, xf, SQRT_2_OVER_PI, GELU_COEF, TANH_SATURATION, dx)
    return dx.reshape(cache.x.shape)
