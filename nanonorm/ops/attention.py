"""Scaled dot-product attention, softmax(q kᵀ · scale + mask) v, with an explicit backward.

The reference keeps the (T, S) probabilities for the backward (memory O(T·S) per head); the
Numba kernel keeps only the row log-sum-exp and recomputes them tile by tile.

Causal masking aligns the last query with the last key (query i sits at position i + S - T),
which is torch's `is_causal` when T == S and is what incremental decoding with a KV cache needs.
A query that sees no key (T > S) gets a zero output.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_device, array_namespace
from .softmax import softmax_forward


class AttentionStats(NamedTuple):
    """What a flash-style forward keeps instead of the probabilities: O(T) per head."""
    lse: Array      # (..., T, 1) row log-sum-exp of the scaled, masked scores; -inf: no key
    causal: bool    # the mask is needed to recompute p


class AttentionCache(NamedTuple):
    q: Array        # (..., T, d)
    k: Array        # (..., S, d)
    v: Array        # (..., S, dv)
    p: Array | AttentionStats  # (..., T, S) probabilities (reference), or AttentionStats
    scale: float                #   (Numba kernel), from which backward recomputes them


def probabilities(q: Array, k: Array, stats: AttentionStats, scale: float) -> Array:
    """(..., T, S) softmax probabilities recomputed from q, k and the row log-sum-exp."""
    xp = array_namespace(q, k)
    scores = (q @ xp.matrix_transpose(k)) * scale                    # (..., T, S)
    lse = stats.lse
    visible = xp.isfinite(lse)                                       # (..., T, 1)
    if stats.causal:
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


def scaled_dot_product_attention_backward(dy: Array, cache: AttentionCache):
    xp = array_namespace(dy)
    q, k, v, p, scale = cache
    if isinstance(p, AttentionStats):                                # a flash-style cache
        p = probabilities(q, k, p, scale)
    dv = xp.matrix_transpose(p) @ dy                                 # (..., S, dv)
    dp = dy @ xp.matrix_transpose(v)                                 # (..., T, S)
    ds = p * (dp - xp.sum(dp * p, axis=-1, keepdims=True))           # (..., T, S)
    dq = (ds @ k) * scale                                            # (..., T, d)
    dk = (xp.matrix_transpose(ds) @ q) * scale                       # (..., S, d)
    return dq, dk, dv
