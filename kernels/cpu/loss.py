"""Fused softmax + cross-entropy forward and backward on NumPy arrays.

Mirrors `nanonorm/ops/loss.py` (CrossEntropyCache: logits, row log-sum-exp, targets). The
forward never stores probabilities (two passes over each row: max, then Σexp, the row in L2);
the backward writes dlogits = (softmax - onehot)·dloss/N in one pass, the only time
probabilities exist. CE fwd reads N·V·itemsize bytes, bwd reads and writes 2·N·V·itemsize.
Edges as the reference's: a target ruled out by a -inf logit costs +inf (an all -inf row
too, whose gradient row is -onehot·dloss/N), a row holding NaN or +inf gives NaN.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from nanonorm.ops.loss import CrossEntropyCache
from . import pool
from ._common import TASK_KERNEL, float_dtype, vexp
from .lanes import lane_max, lane_sum


# Σexp of a row is taken over blocks of this many logits (a scratch in L1), block sums added
# in order: a fixed split, so the same bits however the rows go to threads
BLOCK = 2048


@njit(**TASK_KERNEL)
def _forward(task, per, z, t, lse, gap, log_s):
    # z: (N, V) logits; t: (N,) int64; lse: (N, 1); gap, log_s: (N,) float64, the row's
    # loss being gap + log_s (added in order by _mean_loss); this task's rows
    # [task·per, (task + 1)·per)
    lo, hi = task * per, (task + 1) * per
    z, t, lse, gap, log_s = z[lo:hi], t[lo:hi], lse[lo:hi], gap[lo:hi], log_s[lo:hi]
    n, v = z.shape
    ex = np.empty(min(v, BLOCK), z.dtype)               # exp of one block of a row
    for i in range(n):
        zi = z[i]
        m = lane_max(zi, v, z.dtype.type(-np.inf))
        m = z.dtype.type(0.0) if m == -np.inf else m   # +inf / NaN stay: a NaN row
        s = 0.0
        for j0 in range(0, v, BLOCK):
            zb = zi[j0:j0 + BLOCK]                  # a slice: zi[j0 + j] does not vectorize
            for j in range(zb.shape[0]):
                ex[j] = vexp(zb[j] - m)
            s += lane_sum(ex, 0, zb.shape[0])
        ls = math.log(s) if s != 0.0 else 0.0        # all -inf row: lse -inf, loss +inf
        lse[i, 0] = m + ls if s != 0.0 else -np.inf
        gap[i] = m - zi[t[i]]                        # m - picked first, as the reference
        log_s[i] = ls


@njit(cache=True)
def _mean_loss(gap, log_s):
    s = 0.0
    for i in range(gap.shape[0]):                # in order: deterministic
        s += gap[i] + log_s[i]
    return s / gap.shape[0]


@njit(**TASK_KERNEL)
def _backward(task, per, z, lse, t, scale, dz):
    # z, dz: (N, V); lse: (N, 1); t: (N,); this task's rows [task·per, (task + 1)·per)
    lo, hi = task * per, (task + 1) * per
    z, lse, t, dz = z[lo:hi], lse[lo:hi], t[lo:hi], dz[lo:hi]
    n, v = z.shape
    for i in range(n):
        zi, di = z[i], dz[i]
        l = lse[i, 0]
        l = zi.dtype.type(0.0) if l == -np.inf else l  # all -inf row: p = 0, as softmax's
        for j in range(v):
            di[j] = vexp(zi[j] - l) * scale
        di[t[i]] -= scale


def cross_entropy_forward(logits, targets):
    dt = float_dtype(logits)
    v = logits.shape[-1]
    z = np.ascontiguousarray(logits, dtype=dt).reshape(-1, v)        # (N, V)
    t = np.ascontiguousarray(targets).reshape(-1)                    # (N,)
    n = z.shape[0]
    lse = np.empty((n, 1), dt)
    gap, log_s = np.empty(n, np.float64), np.empty(n, np.float64)
    pool.run(_forward, *pool.tasks(n, v), z, t.astype(np.int64, copy=False), lse, gap, log_s)
    loss = dt.type(_mean_loss(gap, log_s))
    return loss, CrossEntropyCache(z, lse, t, tuple(logits.shape))


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    z = np.ascontiguousarray(cache.logits)
    n = z.shape[0]
    dt = z.dtype
    dz = np.empty_like(z)
    scale = dt.type(float(np.asarray(dloss)) / n)
    pool.run(_backward, *pool.tasks(*z.shape), z, np.ascontiguousarray(cache.lse, dtype=dt),
             np.ascontiguousarray(cache.targets).astype(np.int64, copy=False), scale, dz)
    return dz.reshape(cache.logits_shape)
