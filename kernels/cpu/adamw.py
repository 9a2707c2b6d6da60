"""Fused in-place AdamW step: one pass reading p, g, m, v and writing p, m, v.

Same signature and arithmetic as `nanonorm/ops/adamw.py` (torch.optim.AdamW). The reference
makes ~8 passes over memory; this one moves 7·P·itemsize bytes (read 4 arrays, write 3).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from nanonorm.ops.adamw import fused_step_scalars
from . import pool
from ._common import TASK_KERNEL, float_dtype


@njit(**TASK_KERNEL)
def _step(task, per, p, g, m, v, decay, beta1, one_m_beta1, beta2, one_m_beta2, step_size,
          inv_bc2_sqrt, eps):
    # all (P,) flat, same dtype; the scalars are fused_step_scalars', cast to it; this task's
    # elements [task·per, (task + 1)·per), as slices (indices from 0 vectorize)
    lo, hi = task * per, (task + 1) * per
    p, g, m, v = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi]
    for i in range(p.shape[0]):
        gi = g[i]
        mi = beta1 * m[i] + one_m_beta1 * gi
        vi = beta2 * v[i] + one_m_beta2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step_size * (mi / (np.sqrt(vi) * inv_bc2_sqrt + eps))


def _flat(a):
    """A flat view of `a` that writes through, or a contiguous copy (then copied back)."""
    return (a.reshape(-1), False) if a.flags.c_contiguous else \
        (np.ascontiguousarray(a).reshape(-1), True)


def adamw_step(param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step) -> None:
    """Update param, m and v in place; `step` counts from 1 (this update's number)."""
    float_dtype(param, grad, m, v)                      # float32 / float64 only
    c = param.dtype.type
    scalars = fused_step_scalars(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                 weight_decay=weight_decay, step=step)
    work = [_flat(a) for a in (param, m, v)]
    g = np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1)
    pool.run(_step, *pool.tasks(g.size), work[0][0], g, work[1][0], work[2][0],
             *(c(x) for x in scalars))
    for (flat, copied), a in zip(work, (param, m, v)):
        if copied:                                      # non-contiguous input: copy back
            a[...] = flat.reshape(a.shape)
