"""gelu(x + bias): the MLP's bias add fused into its activation, as llm.c and cuBLASLt's GELU
epilogue fuse it.

Unfused, the MLP's up-projection writes x·W, adds the bias in place (a read and a write of the
(B·T, 4C) activation) and GELU reads it again; the backward reads GELU's gradient once more to
sum the bias gradient. Fused, the kernels add the bias where they read x and sum dbias where
they write dx: 5 passes over the activation instead of 8. The cache keeps x and the bias (the
pre-activation x + bias is recomputed, as GELU's tanh is).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_namespace
from .gelu import GeluCache, gelu_backward, gelu_forward


class BiasGeluCache(NamedTuple):
    x: Array        # (..., C) before the bias
    bias: Array     # (C,)


def bias_gelu_forward(x: Array, bias: Array):
    y, _ = gelu_forward(x + bias)                                   # (..., C)
    return y, BiasGeluCache(x, bias)


def bias_gelu_backward(dy: Array, cache: BiasGeluCache):
    xp = array_namespace(dy)
    dx = gelu_backward(dy, GeluCache(cache.x + cache.bias))         # (..., C)
    rows = math.prod(dx.shape[:-1])                                 # not -1: C may be 0
    dbias = xp.sum(xp.reshape(dx, (rows, dx.shape[-1])), axis=0)    # (C,)
    return dx, dbias
