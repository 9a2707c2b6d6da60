"""LayerNorm over any number of trailing dims, as torch.nn.functional.layer_norm."""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_namespace


class LayerNormCache(NamedTuple):
    x: Array            # (N, D) input, flattened to rows; xhat is recomputed from it
    mean: Array         # (N, 1)
    rstd: Array         # (N, 1) 1 / sqrt(var + eps)
    weight: Array | None  # (D,) flattened, or None
    has_bias: bool
    x_shape: tuple      # the input's original shape
    param_shape: tuple  # normalized_shape


def row_stats(x: Array, eps: float) -> tuple[Array, Array]:
    """Per-row mean and 1/sqrt(var + eps) of x (N, D), biased variance, safe at any magnitude.

    - Each row is divided by a power of two s within a factor 4 of its largest |x| (exact), so
      neither the deviations nor their squares overflow, up to the largest float.
    - Shifted by the row's first value: a constant row gives exactly its value as mean and 0 as
      variance at any magnitude, and rows around 1e18 with a spread of 1e16 never form
      E[x²] - E[x]² (which would cancel catastrophically) nor sums of 1e18s.
    """
    xp = array_namespace(x)
    a = xp.max(xp.abs(x), axis=-1, keepdims=True)                   # (N, 1), NaN row: NaN
    # one below log2(a): its rounding can never make s overflow; s >= 1/2 keeps eps/s² finite
    s = 2.0 ** (xp.floor(xp.log2(xp.maximum(a, xp.ones_like(a)))) - 1.0)
    u = x / s                                                       # (N, D) exact, |u| <= 4
    d = u - u[:, :1]                                                # (N, D) exact near u[0]
    d_mean = xp.mean(d, axis=-1, keepdims=True)                     # (N, 1)
    xc = d - d_mean                                                 # (N, D) centred
    var_u = xp.mean(xc * xc, axis=-1, keepdims=True)
    std = s * xp.sqrt(var_u + (eps / s) / s)                       # sqrt(var + eps)
    # a constant row of huge values: eps / s² underflows, but var is 0: sqrt(eps) exactly
    std = xp.where(var_u == 0, xp.sqrt(xp.full_like(var_u, eps)), std)
    return s * (u[:, :1] + d_mean), 1.0 / std


def normalise(x: Array, mean: Array, rstd: Array) -> Array:
    """xhat = (x - mean)·rstd, formed as (x/2 - mean/2)·2rstd: the same rounding for normal
    numbers, but x - mean cannot overflow on a row spanning ± the largest float."""
    return (x * 0.5 - mean * 0.5) * (rstd * 2.0)


def layer_norm_forward(x: Array, normalized_shape: tuple[int, ...], weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5):
    xp = array_namespace(x, weight, bias)
    d = math.prod(normalized_shape)
    x2 = xp.reshape(x, (-1, d))                                     # (N, D)
    mean, rstd = row_stats(x2, eps)                                 # (N, 1) each
    y = normalise(x2, mean, rstd)                                   # (N, D) xhat
    w = None if weight is None else xp.reshape(weight, (d,))
    if w is not None:
        y = y * w
    if bias is not None:
        y = y + xp.reshape(bias, (d,))
    cache = LayerNormCache(x2, mean, rstd, w, bias is not None, tuple(x.shape),
                           tuple(normalized_shape))
    return xp.reshape(y, x.shape), cache


def layer_norm_backward(dy: Array, cache: LayerNormCache):
    xp = array_namespace(dy)
    d = cache.x.shape[-1]
    dy2 = xp.reshape(dy, (-1, d))                                   # (N, D)
    xhat = normalise(cache.x, cache.mean, cache.rstd)               # (N, D) recomputed
    g = dy2 if cache.weight is None else dy2 * cache.weight         # (N, D)
    dx = cache.rstd * (g - xp.mean(g, axis=-1, keepdims=True)
                       - xhat * xp.mean(g * xhat, axis=-1, keepdims=True))
    dw = None if cache.weight is None else xp.reshape(xp.sum(dy2 * xhat, axis=0),
                                                       cache.param_shape)
    db = xp.reshape(xp.sum(dy2, axis=0), cache.param_shape) if cache.has_bias else None
    return xp.reshape(dx, cache.x_shape), dw, db
