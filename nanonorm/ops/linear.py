"""y = x @ weight + bias, weight in GPT-2's (in_features, out_features) layout."""
from __future__ import annotations

import math
from typing import NamedTuple

from ..backend import Array, array_namespace


class LinearCache(NamedTuple):
    x: Array            # (..., in)
    weight: Array       # (in, out)
    has_bias: bool


def linear_forward(x: Array, weight: Array, bias: Array | None = None):
    xp = array_namespace(x, weight)
    n_in, n_out = weight.shape
    # one (N, in) @ (in, out) product, not one per leading index: BLAS packs the weight once
    n = math.prod(x.shape[:-1])
    y = xp.reshape(xp.reshape(x, (n, n_in)) @ weight, (*x.shape[:-1], n_out))   # (..., out)
    if bias is not None:
        y += bias                                                   # y is ours: in place
    return y, LinearCache(x, weight, bias is not None)


def linear_backward(dy: Array, cache: LinearCache):
    xp = array_namespace(dy)
    x, w = cache.x, cache.weight
    n_in, n_out = w.shape
    n = math.prod(x.shape[:-1])
    dy2 = xp.reshape(dy, (n, n_out))                                # (N, out)
    x2 = xp.reshape(x, (n, n_in))                                   # (N, in)
    dx = xp.reshape(dy2 @ xp.matrix_transpose(w), x.shape)          # (..., in)
    if transposed_view(w):
        # a transposed weight (GPT-2's tied unembedding, wteᵀ): dw in the same layout, so
        # dwᵀ is a contiguous (out, in) array, ready to be added to the embedding's gradient
        dw = xp.matrix_transpose(xp.matrix_transpose(dy2) @ x2)     # (in, out) view of (out, in)
    else:
        dw = xp.matrix_transpose(x2) @ dy2                          # (in, out)
    db = xp.sum(dy2, axis=0) if cache.has_bias else None            # (out,)
    return dx, dw, db


def transposed_view(w: Array) -> bool:
    """True for a NumPy/CuPy matrix stored column-major (e.g. the view wᵀ of a C array)."""
    flags = getattr(w, "flags", None)
    return bool(flags is not None and flags.f_contiguous and not flags.c_contiguous)
