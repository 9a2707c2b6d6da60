"""softmax(x / T) and log_softmax(x / T) along one axis, stable for huge logits and -inf masks.

A row whose entries are all -inf has no defined softmax; here it gives probabilities of 0
(log-probabilities of -inf) and a zero softmax gradient, never NaN.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, array_namespace


class SoftmaxCache(NamedTuple):
    out: Array          # softmax: the probabilities; log_softmax: the log-probabilities
    axis: int
    temperature: float


def shifted_exp(z: Array, axis: int) -> tuple[Array, Array, Array]:
    """exp(z - max) with its row sum and max; a fully -inf row is shifted by 0, not by -inf."""
    xp = array_namespace(z)
    m = xp.max(z, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    e = xp.exp(z - m)
    return e, xp.sum(e, axis=axis, keepdims=True), m


def softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    xp = array_namespace(x)
    e, s, _ = shifted_exp(x / temperature if temperature != 1.0 else x, axis)
    p = e / xp.where(s > 0, s, xp.ones_like(s))                    # all -inf row -> zeros
    return p, SoftmaxCache(p, axis, temperature)


def softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    xp = array_namespace(dy)
    p = cache.out
    return p * (dy - xp.sum(dy * p, axis=cache.axis, keepdims=True)) / cache.temperature


def log_softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    xp = array_namespace(x)
    z = x / temperature if temperature != 1.0 else x
    _, s, m = shifted_exp(z, axis)
    # (z - m) - log s, not z - (m + log s): m + log s would round to the ulp of m (~1e-3 at
    # logits of 1e4 in float32). An all -inf row has s = 0, m = 0 and gives -inf.
    out = (z - m) - xp.log(xp.where(s > 0, s, xp.ones_like(s)))
    return out, SoftmaxCache(out, axis, temperature)


def log_softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    xp = array_namespace(dy)
    p = xp.exp(cache.out)
    return (dy - p * xp.sum(dy, axis=cache.axis, keepdims=True)) / cache.temperature
