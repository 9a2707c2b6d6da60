"""One AdamW update of one tensor, in place, with torch.optim.AdamW's exact arithmetic.

    p ← p·(1 − lr·wd)                         decoupled decay (not added to the gradient)
    m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
    p ← p − lr/(1 − β1ᵗ) · m / (sqrt(v)/sqrt(1 − β2ᵗ) + eps)

Array API standard only; a fused kernel with this signature may replace it through dispatch.
"""
from __future__ import annotations

import math

from ..backend import Array, array_namespace


def adamw_step(param: Array, grad: Array, m: Array, v: Array, *, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float, step: int) -> None:
    """Update param, m and v in place; `step` counts from 1 (this update's number)."""
    xp = array_namespace(param, grad, m, v)
    if weight_decay != 0.0:
        param *= 1.0 - lr * weight_decay
    m *= beta1
    m += (1.0 - beta1) * grad
    v *= beta2
    v += (1.0 - beta2) * (grad * grad)
    step_size = lr / (1.0 - beta1 ** step)
    denom = xp.sqrt(v) / math.sqrt(1.0 - beta2 ** step) + eps
    param -= step_size * (m / denom)


def fused_step_scalars(*, lr: float, beta1: float, beta2: float, eps: float,
                       weight_decay: float, step: int) -> tuple[float, ...]:
    """The per-step scalars of a fused kernel, in float64 and in this order: decay, β1, 1 − β1,
    β2, 1 − β2, step size lr/(1 − β1ᵗ), 1/sqrt(1 − β2ᵗ), eps. (1 − β is formed here, before
    any cast: 1 − float32(0.999) would be off by 1e-5 relative.)"""
    decay = 1.0 - lr * weight_decay if weight_decay != 0.0 else 1.0
    return (decay, beta1, 1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - beta1 ** step),
            1.0 / math.sqrt(1.0 - beta2 ** step), eps)
