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


def _clip_inf(xp, x: Array, *, keep_plus_inf: bool) -> Array:
    """x with -inf (and +inf unless kept) replaced by the largest finite float, so that
    inf·0 = NaN never meets the saturated tail, where the factor beside x is exactly 0.
    NaN stays NaN."""
    big = float(xp.finfo(x.dtype).max)
    return xp.clip(x, min=-big, max=None if keep_plus_inf else big)


def gelu_forward(x: Array):
    xp = array_namespace(x)
    _, t = _inner(xp, x)
    return _clip_inf(xp, x, keep_plus_inf=True) * (0.5 * (1.0 + t)), GeluCache(x)


def gelu_backward(dy: Array, cache: GeluCache) -> Array:
    xp = array_namespace(dy)
    x = cache.x
    xc, t = _inner(xp, x)
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * xc * xc)        # d(tanh arg)/dx
    xf = _clip_inf(xp, x, keep_plus_inf=False)                      # ±inf -> ±max
    return dy * (0.5 * (1.0 + t) + xf * (0.5 * (1.0 - t * t) * du))
