"""Scaled dot-product attention, softmax(q kᵀ · scale + mask) v, with an explicit backward.

The reference keeps the (T, S) probabilities for the backward (`AttentionCache`, memory O(T·S)
per head); the Numba kernel keeps only the row log-sum-exp (`AttentionLseCache`) and recomputes
them tile by tile. Every backward accepts both: `probabilities(cache)` converts.

Causal masking aligns the last query with the last key (query i sits at position i + S - T),
which is torch's `is_causal` when T == S and is what incremental decoding with a KV cache needs.
A query that sees no key (T > S) gets a zero output.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_device, array_namespace
from .softmax import softmax_forward


class AttentionCache(NamedTuple):
    """The reference's cache: the probabilities themselves, O(T·S) per head."""
    q: Array        # (..., T, d)
    k: Array        # (..., S, d)
    v: Array        # (..., S, dv)
    p: Array        # (..., T, S) probabilities
    scale: float


class AttentionLseCache(NamedTuple):
    """A flash-style forward's cache: the row log-sum-exp instead of p, O(T) per head."""
    q: Array        # (..., T, d)
    k: Array        # (..., S, d)
    v: Array        # (..., S, dv)
    lse: Array      # (..., T, 1) log-sum-exp of the scaled, masked scores; -inf: no key
    causal: bool    # the mask is needed to recompute p
    scale: float
    # (..., T, dv) the forward's output, which the caller holds anyway: the CUDA backward's
    # D = rowsum(dO∘O) = Σ_j p·dp without another pass over the keys. None where a forward
    # does not keep it (the Numba kernel's): a backward that needs it recomputes it.
    o: Array | None = None


CACHES = (AttentionCache, AttentionLseCache)   # what every backward accepts


def probabilities(cache: AttentionCache | AttentionLseCache) -> Array:
    """The (..., T, S) softmax probabilities of either cache: kept, or recomputed from q, k
    and the row log-sum-exp (the one conversion between the two layouts)."""
    if isinstance(cache, AttentionCache):
        return cache.p
    q, k, lse = cache.q, cache.k, cache.lse
    xp = array_namespace(q, k)
    scores = (q @ xp.matrix_transpose(k)) * cache.scale              # (..., T, S)
    visible = xp.isfinite(lse)                                       # (..., T, 1)
    if cache.causal:
        visible = visible & causal_mask(xp, q.shape[-2], k.shape[-2], array_device(q))
    safe_lse = xp.where(xp.isfinite(lse), lse, xp.zeros_like(lse))
    z = xp.where(visible, scores - safe_lse, xp.full_like(scores, -xp.inf))   # exp(-inf) = 0
    return xp.exp(z)


def causal_mask(xp, t: int, s: int, device=None) -> Array:
    """(T, S) boolean, True where query i may see key j: j <= i + S - T."""
    i = xp.arange(t, device=device)[:, None]
    j = xp.arange(s, device=device)[None, :]
    return j <= i + (s - t)


def scaled_dot_product_attention_forward(q: Array, k: Array, v: Array, *, causal: bool = False,
                                         scale: float | None = None):
    xp = array_namespace(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    scores = (q @ xp.matrix_transpose(k)) * scale                    # (..., T, S)
    if causal:
        mask = causal_mask(xp, q.shape[-2], k.shape[-2], array_device(q))
        scores = xp.where(mask, scores, xp.full_like(scores, -xp.inf))
    p, _ = softmax_forward(scores, axis=-1)                          # (..., T, S)
    return p @ v, AttentionCache(q, k, v, p, scale)                  # (..., T, dv)


def scaled_dot_product_attention_backward(dy: Array, cache: AttentionCache | AttentionLseCache):
    xp = array_namespace(dy)
    q, k, v, scale = cache.q, cache.k, cache.v, cache.scale
    p = probabilities(cache)                                         # (..., T, S)
    dv = xp.matrix_transpose(p) @ dy                                 # (..., S, dv)
    dp = dy @ xp.matrix_transpose(v)                                 # (..., T, S)
    ds = p * (dp - xp.sum(dp * p, axis=-1, keepdims=True))           # (..., T, S)
    dq = (ds @ k) * scale                                            # (..., T, d)
    dk = (xp.matrix_transpose(ds) @ q) * scale                       # (..., S, d)
    return dq, dk, dv
