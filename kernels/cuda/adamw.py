"""Fused in-place AdamW step as a numba-cuda kernel: one pass reading p, g, m, v.

Same signature and arithmetic as `nanonorm/ops/adamw.py` (torch.optim.AdamW). The reference
makes ~8 passes over memory; this kernel moves
  AdamW: read p, g, m, v; write p, m, v        -> 7·P·itemsize bytes
The per-step scalars (bias corrections) are computed on the host from Python numbers, never
from device arrays, so the step needs no synchronisation.
"""
from __future__ import annotations

import math

from numba import cuda, float64

from nanonorm.ops.adamw import fused_step_scalars
from ._common import THREADS, array_module, float_dtype, grid_1d, kernel, stream_for, threads_for


@kernel(lambda ft: (ft[::1],) * 4 + (float64,) * 8)
def _step(p, g, m, v, decay, beta1, one_m_beta1, beta2, one_m_beta2, step_size, inv_bc2_sqrt,
          eps):
    # p, g, m, v: (P,) flat, same dtype; fused_step_scalars' float64 scalars, cast once
    dt = p.dtype.type
    c_decay, b1, omb1, b2, omb2 = dt(decay), dt(beta1), dt(one_m_beta1), dt(beta2), dt(one_m_beta2)
    lr_t, ibc2, e = dt(step_size), dt(inv_bc2_sqrt), dt(eps)
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gi = g[i]
        mi = b1 * m[i] + omb1 * gi
        vi = b2 * v[i] + omb2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * c_decay - lr_t * (mi / (math.sqrt(vi) * ibc2 + e))


def _flat(mod, a):
    """A flat view of `a` that writes through, or a contiguous copy (then copied back)."""
    return (a.reshape(-1), False) if a.flags.c_contiguous else \
        (mod.ascontiguousarray(a).reshape(-1), True)


def adamw_step(param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step) -> None:
    """Update param, m and v in place; `step` counts from 1 (this update's number)."""
    mod = array_module(param)
    float_dtype(param, grad, m, v)                     # float32 / float64 only
    scalars = fused_step_scalars(lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                 weight_decay=weight_decay, step=step)
    work = [_flat(mod, a) for a in (param, m, v)]
    g = mod.ascontiguousarray(grad, dtype=param.dtype).reshape(-1)
    threads = threads_for(THREADS)
    if g.size:
        _step[grid_1d(g.size, threads), threads, stream_for(g)](
            work[0][0], g, work[1][0], work[2][0], *(float(x) for x in scalars))
    for (flat, copied), a in zip(work, (param, m, v)):
        if copied:                                     # non-contiguous input: write back
            a[...] = flat.reshape(a.shape)
