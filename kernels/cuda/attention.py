"""Scaled dot-product attention on the GPU: matmuls (cuBLAS through CuPy) + the fused softmax.

Same signature and AttentionCache as `nanonorm/ops/attention.py` (the (..., T, S)
probabilities are kept for the backward). The forward applies scale, causal mask and softmax
to the scores in one kernel (softmax.py), instead of the reference's three passes (scale,
where, softmax); the backward's ds = p·(dp - Σ dp·p) is the softmax backward kernel.
  scores: B·NH·T·S·d·2 FLOP (matmul)  ->  fused scale+mask+softmax: 2·B·NH·T·S·itemsize bytes
"""
from __future__ import annotations

import math

from nanonorm.ops.attention import (AttentionCache,
                                   scaled_dot_product_attention_backward as reference_backward)
from nanonorm.ops.softmax import SoftmaxCache
from ._common import array_module, float_dtype
from .softmax import softmax_backward, softmax_rows


def scaled_dot_product_attention_forward(q, k, v, *, causal=False, scale=None):
    mod = array_module(q)
    float_dtype(q, k, v)                                             # float32 / float64 only
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    t, s = q.shape[-2], k.shape[-2]
    scores = mod.ascontiguousarray(q @ mod.swapaxes(k, -1, -2))      # (..., T, S)
    rows = math.prod(scores.shape[:-1])                              # S may be 0: no -1
    p = softmax_rows(scores.reshape(rows, s), scale, False, causal, t).reshape(scores.shape)
    return p @ v, AttentionCache(q, k, v, p, scale)                  # (..., T, dv)


def scaled_dot_product_attention_backward(dy, cache):
    if not isinstance(cache, AttentionCache):   # row statistics instead of p: the reference
        return reference_backward(dy, cache)    # recomputes p
    q, k, v, p, scale = cache
    mod = array_module(dy)
    float_dtype(dy, q, k, v)
    dv = mod.swapaxes(p, -1, -2) @ dy                                 # (..., S, dv)
    dp = dy @ mod.swapaxes(v, -1, -2)                                 # (..., T, S)
    ds = softmax_backward(dp, SoftmaxCache(p, -1, 1.0))               # (..., T, S)
    dq = (ds @ k) * scale                                             # (..., T, d)
    dk = (mod.swapaxes(ds, -1, -2) @ q) * scale                       # (..., S, d)
    return dq, dk, dv
