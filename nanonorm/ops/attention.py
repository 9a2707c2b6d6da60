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


class AttentionCache(NamedTuple):
    q: Array        # (..., T, d)
    k: Array        # (..., S, d)
    v: Array        # (..., S, dv)
    p: Array        # (..., T, S) attention probabilities
    scale: float


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
    dv = xp.matrix_transpose(p) @ dy                                 # (..., S, dv)
    dp = dy @ xp.matrix_transpose(v)                                 # (..., T, S)
    ds = p * (dp - xp.sum(dp * p, axis=-1, keepdims=True))           # (..., T, S)
    dq = (ds @ k) * scale                                            # (..., T, d)
    dk = (xp.matrix_transpose(ds) @ q) * scale                       # (..., S, d)
    return dq, dk, dv
