"""Row lookup out[..., :] = weight[idx[...], :]; the backward scatter-adds repeated ids."""
from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, array_device, array_namespace, scatter_add_rows


class EmbeddingCache(NamedTuple):
    idx: Array          # (N,) flattened ids
    weight_shape: tuple  # (V, C)


def embedding_forward(idx: Array, weight: Array):
    xp = array_namespace(idx, weight)
    # clipped: ids on a device are range-checked there, later (nanonorm.device_checks), so a
    # bad id must read a wrong row until then, never memory outside weight
    flat = xp.clip(xp.reshape(idx, (-1,)), 0, weight.shape[0] - 1)   # (N,)
    out = xp.take(weight, flat, axis=0)                             # (N, C)
    return xp.reshape(out, (*idx.shape, weight.shape[1])), EmbeddingCache(flat, tuple(weight.shape))


def embedding_backward(dy: Array, cache: EmbeddingCache) -> Array:
    xp = array_namespace(dy)
    v, c = cache.weight_shape
    dw = xp.zeros((v, c), dtype=dy.dtype, device=array_device(dy))  # (V, C)
    return scatter_add_rows(dw, cache.idx, xp.reshape(dy, (-1, c)))
