"""GELU (tanh approximation) forward and backward on NumPy arrays, elementwise and fused.

Mirrors `nanonorm/ops/gelu.py` (GeluCache keeps x). With u = sqrt(2/π)(x + 0.044715x³) the
kernel uses 0.5(1 + tanh u) = σ(2u) = 1/(1 + e^(-2u)), which needs one vectorizable exp and
never forms 1 + tanh u by cancellation. Edges as the reference's: ±inf take GELU's limits
(+inf, 0; gradients 1, 0), NaN gives NaN (every saturation test below is false for NaN, so
NaN takes the computing branch). GELU fwd moves 2·N·itemsize bytes (read x, write y),
bwd 3·N·itemsize (read x, dy; write dx).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from nanonorm.ops.gelu import GELU_COEF, SQRT_2_OVER_PI, TANH_SATURATION, GeluCache
from . import pool
from ._common import FASTMATH, TASK_KERNEL, float_dtype, vexp


@njit(cache=True, fastmath=FASTMATH, inline="always")
def gelu_value(xi, k, c, sat, one):
    """gelu(xi) = xi·σ(2u), in the dtype of the typed constants k, c, sat and one (a Python
    number would promote float32 work to float64)."""
    zero, two = one - one, one + one
    xc = min(max(xi, -sat), sat)                      # tanh is ±1 beyond, x³ stays finite
    u = k * xc * (one + c * xc * xc)
    sg = one / (one + vexp(-two * u))
    return zero if xi <= -sat else xi * sg            # tanh = -1 exactly beyond


@njit(cache=True, fastmath=FASTMATH, inline="always")
def gelu_slope(xi, k, c, sat, one):
    """d gelu / dx at xi: σ + 2x·σ(1 - σ)·u', with 1 - σ = e·σ and e = e^(-2u)."""
    zero, two = one - one, one + one
    xc = min(max(xi, -sat), sat)
    u = k * xc * (one + c * xc * xc)
    du = k * (one + (two + one) * c * xc * xc)
    e = vexp(-two * u)
    sg = one / (one + e)
    es = e * sg if sg != zero else one                # 1 - σ; e = inf gives σ = 0, not NaN
    # σ' = 2σ(1 - σ)u' is 0 when saturated: not formed there, where 2x may overflow
    ds = zero if abs(xi) >= sat else two * xi * sg * es * du
    return (zero if xi <= -sat else sg) + ds


@njit(**TASK_KERNEL)
def _forward(task, per, x, k, c, sat, y):
    # x, y: (N,) flat; this task's elements [task·per, (task + 1)·per), as slices: indices
    # from 0 let LLVM vectorize (offset ones keep a negative-index check per element)
    x, y = x[task * per:(task + 1) * per], y[task * per:(task + 1) * per]
    for i in range(x.shape[0]):
        y[i] = gelu_value(x[i], k, c, sat, x.dtype.type(1.0))


@njit(**TASK_KERNEL)
def _backward(task, per, dy, x, k, c, sat, dx):
    # dy, x, dx: (N,) flat
    lo, hi = task * per, (task + 1) * per
    dy, x, dx = dy[lo:hi], x[lo:hi], dx[lo:hi]
    for i in range(x.shape[0]):
        dx[i] = dy[i] * gelu_slope(x[i], k, c, sat, x.dtype.type(1.0))


def _consts(dt):
    return dt.type(SQRT_2_OVER_PI), dt.type(GELU_COEF), dt.type(TANH_SATURATION)


def gelu_forward(x):
    dt = float_dtype(x)
    xf = np.ascontiguousarray(x, dtype=dt)
    y = np.empty_like(xf)
    pool.run(_forward, *pool.tasks(xf.size), xf.reshape(-1), *_consts(dt), y.reshape(-1))
    return y, GeluCache(xf)


def gelu_backward(dy, cache: GeluCache):
    dt = float_dtype(dy, cache.x)
    x = np.ascontiguousarray(cache.x, dtype=dt)
    dyf = np.ascontiguousarray(dy, dtype=dt)
    dx = np.empty_like(x)
    pool.run(_backward, *pool.tasks(x.size), dyf.reshape(-1), x.reshape(-1), *_consts(dt),
             dx.reshape(-1))
    return dx
