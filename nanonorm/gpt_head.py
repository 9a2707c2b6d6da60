"""The unembedding and the loss of a training step, in blocks of rows, never (B, T, V) at once.

GPT-2 small at B=8, T=1024 has (8192, 50257) logits: 1.5 GiB in float32, and as much again for
their gradient. A training step needs neither whole: for each block of rows this computes the
logits, their cross-entropy, the gradient of that block's logits for dloss = 1, and at once
their products with the head weight (dx rows and a part of dweight), then drops the block.
Nothing is recomputed: the head's backward runs in the forward, as llm.c's fused classifier
does, and `GPT.backward(dloss)` only scales it by dloss. Each block is the ordinary functional
ops (linear, cross_entropy) on a slice, so every implementation runs it.
"""
from __future__ import annotations

from typing import NamedTuple

from . import functional as F
from . import validate as check
from .backend import Array, array_device

__all__ = ["HeadGradient", "ROW_BLOCK_BYTES", "loss_and_head_gradient", "scaled"]

# logits of one block of rows: big enough for full-speed matmuls (hundreds of rows at V=50257),
# small beside the activations
ROW_BLOCK_BYTES = 128 << 20


class HeadGradient(NamedTuple):
    """The head's gradients for dloss = 1, computed during the forward."""
    dx: Array           # (B, T, C) gradient of the head's input (ln_f's output)
    dweight: Array      # (C, V) gradient of the head weight, in the weight's layout


def _rows_per_block(n: int, v: int, itemsize: int) -> int:
    return max(1, min(n, ROW_BLOCK_BYTES // max(1, v * itemsize)))


def loss_and_head_gradient(xp, h: Array, weight: Array, targets: Array):
    """The mean cross-entropy of h (B, T, C) · weight (C, V) against targets (B, T), and its
    gradients for dloss = 1, one block of rows at a time.

    The mean is the blocks' means weighted by their share of the rows, summed in float64; a
    block's logit gradient is (softmax - onehot)/N, as the whole batch's would be."""
    b, t, c = h.shape
    n = b * t
    rows = _rows_per_block(n, weight.shape[1], xp.finfo(h.dtype).bits // 8)
    h2 = xp.reshape(h, (n, c))                                          # (N, C)
    t1 = xp.reshape(targets, (n,))                                      # (N,)
    dx = xp.empty((n, c), dtype=h.dtype, device=array_device(h))        # (N, C)
    dweight, total = None, None
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        share = (r1 - r0) / n
        logits, lin = F.linear_forward(h2[r0:r1, :], weight)            # (rows, V)
        loss, ce = F.cross_entropy_forward(logits, t1[r0:r1])
        del logits              # the cache holds it until its gradient replaces it
        dlogits = F.cross_entropy_backward(share, ce)                   # (rows, V)
        del ce
        dx[r0:r1, :], dw, _ = F.linear_backward(dlogits, lin)           # (rows, C), (C, V)
        del dlogits, lin
        if dweight is None:
            dweight = dw
        else:
            dweight += dw                   # same layout: in place, element by element
        part = xp.astype(xp.asarray(loss, device=array_device(h)), xp.float64) * share
        total = part if total is None else total + part
    loss = xp.astype(total, h.dtype)
    return loss, HeadGradient(xp.reshape(dx, (b, t, c)), dweight)


def scaled(g: HeadGradient, dloss, xp) -> HeadGradient:
    """The head's gradients for an upstream dloss (exact, untouched, for dloss = 1)."""
    if _is_one(dloss):
        return g
    s = xp.astype(xp.asarray(dloss, device=array_device(g.dx)), g.dx.dtype)
    return HeadGradient(g.dx * s, g.dweight * s)


def _is_one(dloss) -> bool:
    return check.is_real(dloss) and float(dloss) == 1.0

