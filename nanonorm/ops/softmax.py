"""softmax(x / T) and log_softmax(x / T) along one axis, stable at any magnitude and temperature.

The row is shifted by its max before the temperature divides it, z = (x - max) / T <= 0, so no
exp overflows and a tiny T gives the argmax (ties share it) instead of inf / inf = NaN.
Edges, the same on every implementation:
- a row that is all -inf has no defined softmax; here it gives probabilities of 0
  (log-probabilities of -inf) and a zero softmax gradient, never NaN;
- a row holding NaN or +inf gives NaN everywhere (a diverged logit is never hidden);
- an empty axis gives an empty result.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, array_namespace


class SoftmaxCache(NamedTuple):
    out: Array          # softmax: the probabilities; log_softmax: the log-probabilities
    axis: int
    temperature: float


def row_shift(xp, x: Array, axis: int) -> Array:
    """The row max, with an all -inf row shifted by 0 (+inf and NaN stay, making a NaN row)."""
    m = xp.max(x, axis=axis, keepdims=True)
    return xp.where(m == -xp.inf, xp.zeros_like(m), m)


def shifted_exp(z: Array, axis: int) -> tuple[Array, Array, Array]:
    """exp(z - max) with its row sum and the shift (row_shift)."""
    xp = array_namespace(z)
    m = row_shift(xp, z, axis)
    e = xp.exp(z - m)
    return e, xp.sum(e, axis=axis, keepdims=True), m


def _rounds_to_zero(xp, dtype, temperature: float) -> bool:
    """Whether T is below half the dtype's smallest subnormal, so that it rounds to 0."""
    info = xp.finfo(dtype)
    return temperature <= float(info.smallest_normal) * float(info.eps) / 2


def scaled_logits(x: Array, axis: int, temperature: float) -> Array:
    """z = (x - max) / T, every entry <= 0 (or NaN), and exact where the math is finite:
    - T < 1: x - max overflows only where (x - max) / T does too, and a quotient beyond the
      dtype is -inf without being formed (no overflow warning); 0 stays 0 even if T rounds
      to 0 in x's dtype (the argmax);
    - T > 1: where x - max overflows (x and max near ∓ the largest float), x/T - max/T does
      not, and is used instead."""
    xp = array_namespace(x)
    m = row_shift(xp, x, axis)                                       # (..., 1)
    d = x - m                                                        # (..., C) <= 0
    if temperature == 1.0:
        return d
    ninf = xp.full_like(d, -xp.inf)
    if temperature < 1.0:
        if _rounds_to_zero(xp, x.dtype, temperature):
            return xp.where(d < 0, ninf, d)                          # 0 and NaN stay
        info = xp.finfo(x.dtype)
        beyond = d < -(float(info.max) * temperature * (1.0 + 4.0 * float(info.eps)))
        return xp.where(beyond, ninf, xp.where(beyond, xp.zeros_like(d), d) / temperature)
    z = d / temperature
    overflowed = (d == -xp.inf) & (x > -xp.inf)
    return xp.where(overflowed, x / temperature - m / temperature, z)


def _exp_and_sum(x: Array, axis: int, temperature: float):
    xp = array_namespace(x)
    z = scaled_logits(x, axis, temperature)
    e = xp.exp(z)
    return z, e, xp.sum(e, axis=axis, keepdims=True)


def softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    xp = array_namespace(x)
    if x.shape[axis] == 0:                                           # nothing to normalise
        p = xp.zeros_like(x)
        return p, SoftmaxCache(p, axis, temperature)
    _, e, s = _exp_and_sum(x, axis, temperature)
    p = e / xp.where(s == 0, xp.ones_like(s), s)                     # all -inf row -> zeros
    return p, SoftmaxCache(p, axis, temperature)


def _over_temperature(xp, g: Array, temperature: float) -> Array:
    """g / T, with 0 / T = 0 (and ±inf otherwise) where T rounds to 0 in g's dtype."""
    if temperature == 1.0:
        return g
    if temperature < 1.0 and _rounds_to_zero(xp, g.dtype, temperature):
        inf = xp.full_like(g, xp.inf)
        return xp.where(g > 0, inf, xp.where(g < 0, -inf, g))
    return g / temperature


def softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    xp = array_namespace(dy)
    p = cache.out
    g = p * (dy - xp.sum(dy * p, axis=cache.axis, keepdims=True))
    return _over_temperature(xp, g, cache.temperature)


def log_softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    xp = array_namespace(x)
    if x.shape[axis] == 0:
        out = xp.zeros_like(x)
        return out, SoftmaxCache(out, axis, temperature)
    z, _, s = _exp_and_sum(x, axis, temperature)
    # z - log s, z already shifted: m + log s is never formed (it would round to the ulp of m,
    # ~1e-3 at logits of 1e4 in float32). An all -inf row has s = 0 and gives -inf.
    out = z - xp.log(xp.where(s == 0, xp.ones_like(s), s))
    return out, SoftmaxCache(out, axis, temperature)


def log_softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    xp = array_namespace(dy)
    p = xp.exp(cache.out)
    g = dy - p * xp.sum(dy, axis=cache.axis, keepdims=True)
    return _over_temperature(xp, g, cache.temperature)
