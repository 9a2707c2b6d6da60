"""Cross-entropy of integer targets, averaged over every position.

The cache keeps the logits and the per-row log-sum-exp (O(rows)); the backward recomputes the
probabilities once, rather than keeping a second (N, V) array alive between the passes.

Edges, the same on every implementation: a target whose logit is -inf (ruled out by the
logits, including a row that is all -inf) costs +inf; a fully masked row's probabilities are
0, as softmax's, so its gradient row is -onehot·dloss/N (finite). A row holding NaN or +inf
gives a NaN loss and a NaN gradient row.
"""
from __future__ import annotations

from typing import NamedTuple

from ..backend import Array, array_device, array_namespace
from .softmax import shifted_exp


class CrossEntropyCache(NamedTuple):
    logits: Array       # (N, V)
    lse: Array          # (N, 1) log-sum-exp per row; -inf for a row that is all -inf
    targets: Array      # (N,)
    logits_shape: tuple


def cross_entropy_forward(logits: Array, targets: Array):
    xp = array_namespace(logits, targets)
    v = logits.shape[-1]
    z = xp.reshape(logits, (-1, v))                                 # (N, V)
    # clipped: targets on a device are range-checked there, later (nanonorm.device_checks)
    t = xp.clip(xp.reshape(targets, (-1,)), 0, max(v - 1, 0))       # (N,)
    _, s, m = shifted_exp(z, axis=-1)                               # (N, 1) each
    log_s = xp.log(xp.where(s == 0, xp.ones_like(s), s))            # 0 for an all -inf row
    picked = xp.take_along_axis(z, xp.astype(t[:, None], xp.int64), axis=-1)  # (N, 1)
    # m - picked first: exact-ish at large logits; +inf where the target's logit is -inf
    loss = xp.mean((m - picked) + log_s)
    lse = xp.where(s == 0, xp.full_like(s, -xp.inf), m + log_s)
    return loss, CrossEntropyCache(z, lse, t, tuple(logits.shape))


def cross_entropy_backward(dloss, cache: CrossEntropyCache) -> Array:
    xp = array_namespace(cache.logits)
    z, lse, t = cache.logits, cache.lse, cache.targets
    n, v = z.shape
    onehot = t[:, None] == xp.arange(v, device=array_device(z))[None, :]   # (N, V)
    scale = xp.astype(xp.asarray(dloss, device=array_device(z)), z.dtype) / n
    shift = xp.where(lse == -xp.inf, xp.zeros_like(lse), lse)     # all -inf row: p = 0
    dz = (xp.exp(z - shift) - xp.astype(onehot, z.dtype)) * scale        # (N, V)
    return xp.reshape(dz, cache.logits_shape)
