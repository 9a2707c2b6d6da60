"""Cross-entropy of integer targets, averaged over every position.

The cache keeps the logits and the per-row log-sum-exp (O(rows)); the backward recomputes the
probabilities once, rather than keeping a second (N, V) array alive between the passes.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, array_device, array_namespace
from .softmax import shifted_exp


class CrossEntropyCache(NamedTuple):
    logits: Array       # (N, V)
    lse: Array          # (N, 1) log-sum-exp per row
    targets: Array      # (N,)
    logits_shape: tuple


def cross_entropy_forward(logits: Array, targets: Array):
    xp = array_namespace(logits, targets)
    v = logits.shape[-1]
    z = xp.reshape(logits, (-1, v))                                 # (N, V)
    t = xp.reshape(targets, (-1,))                                  # (N,)
    _, s, m = shifted_exp(z, axis=-1)
    log_s = xp.log(s)                                               # (N, 1)
    picked = xp.take_along_axis(z, xp.astype(t[:, None], xp.int64), axis=-1)  # (N, 1)
    loss = xp.mean((m - picked) + log_s)  # m - picked first: exact-ish at large logits
    lse = m + log_s
    return loss, CrossEntropyCache(z, lse, t, tuple(logits.shape))


def cross_entropy_backward(dloss, cache: CrossEntropyCache) -> Array:
    xp = array_namespace(cache.logits)
    z, lse, t = cache.logits, cache.lse, cache.targets
    n, v = z.shape
    onehot = t[:, None] == xp.arange(v, device=array_device(z))[None, :]   # (N, V)
    scale = xp.astype(xp.asarray(dloss, device=array_device(z)), z.dtype) / n
    dz = (xp.exp(z - lse) - xp.astype(onehot, z.dtype)) * scale          # (N, V)
    return xp.reshape(dz, cache.logits_shape)
