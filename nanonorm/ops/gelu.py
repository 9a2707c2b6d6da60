"""GELU, tanh approximation (GPT-2's): 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).

At ±inf GELU takes its limits, as it does for large finite x: gelu(+inf) = +inf,
gelu(-inf) = 0, gradients 1 and 0 there. NaN in gives NaN out.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_namespace

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF = 0.044715
# For |x| >= 10 the tanh is exactly ±1 in float32 and float64 alike, so clipping its argument
# there changes nothing but keeps x³ from overflowing (and 0·inf from appearing in the grad).
TANH_SATURATION = 10.0


class GeluCache(NamedTuple):
    x: Array


def _inner(xp, x: Array) -> tuple[Array, Array]:
    xc = xp.clip(x, -TANH_SATURATION, TANH_SATURATION)
    t = xp.tanh(SQRT_2_OVER_PI * xc * (1.0 + GELU_COEF * xc * xc))
    return xc, t


def _times(xp, x: Array, f: Array) -> Array:
    """x·f with 0 where f is exactly 0 (the saturated tail), even for x = ±inf; NaN where x
    is NaN, whatever a backend's clip made of it."""
    saturated = (f == 0) & ~xp.isnan(x)
    return xp.where(saturated, xp.zeros_like(f), x * xp.where(saturated, xp.ones_like(f), f))


def gelu_forward(x: Array):
    xp = array_namespace(x)
    _, t = _inner(xp, x)
    return _times(xp, x, 0.5 * (1.0 + t)), GeluCache(x)


def gelu_backward(dy: Array, cache: GeluCache) -> Array:
    xp = array_namespace(dy)
    x = cache.x
    xc, t = _inner(xp, x)
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * xc * xc)        # d(tanh arg)/dx
    return dy * (0.5 * (1.0 + t) + _times(xp, x, 0.5 * (1.0 - t * t) * du))
