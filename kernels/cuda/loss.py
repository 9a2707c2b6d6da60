"""Fused softmax + cross-entropy forward and backward as numba-cuda kernels.

Mirrors `nanonorm/ops/loss.py` (CrossEntropyCache: logits, row log-sum-exp, targets). The
forward never stores probabilities: one block per row takes the max, then Σexp (in the
logits' dtype, as an exact pair per thread and at each node of the block's tree: see
_common.py), and writes the
row's lse and loss; the mean over rows is one small float64 device reduction (no host round
trip).
The backward writes dlogits = (softmax - onehot)·dloss/N in one pass, the only time
probabilities exist; dloss stays on the device (a 1-element array read by the kernel).
Edges as the reference's: a target ruled out by a -inf logit costs +inf (an all -inf row too,
whose gradient row is -onehot·dloss/N), a row holding NaN or +inf gives NaN.
  CE fwd: read logits                          -> N·V·itemsize bytes
  CE bwd: read logits, write dlogits           -> 2·N·V·itemsize bytes
"""
from __future__ import annotations

import math

from numba import cuda, int64

from nanonorm.ops.loss import CrossEntropyCache
from ._common import (THREADS, acc_add, array_module, block_max, block_sum, float_dtype,
                      kernel, stream_for, threads_for)


@kernel(lambda ft: (ft[:, ::1], int64[::1], ft[:, ::1], ft[::1]))
def _forward(z, t, lse, losses):
    # z: (N, V) logits; t: (N,) int64; lse: (N, 1); losses: (N,) per row
    sa = cuda.shared.array(THREADS, z.dtype)
    se = cuda.shared.array(THREADS, z.dtype)
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    v = z.shape[1]
    zero, ninf = z.dtype.type(0.0), z.dtype.type(-math.inf)
    m = ninf
    for j in range(tid, v, nt):
        m = max(m, z[i, j])
    m = block_max(sa, m)
    mt = zero if m == ninf else m                 # +inf / NaN stay: a NaN row
    s, e = zero, zero                             # Σexp as a pair (see _common)
    for j in range(tid, v, nt):
        s, e = acc_add(s, e, math.exp(z[i, j] - mt))
    s = block_sum(sa, se, s, e)
    if tid == 0:
        log_s = math.log(s) if s != zero else zero  # all -inf row: lse -inf, loss +inf
        lse[i, 0] = mt + log_s if s != zero else ninf
        ti = t[i]
        # a target out of range is range-checked on the device and raised later
        # (nanonorm.device_checks): until then its loss is NaN, and no logit outside the row
        # is read
        picked = z[i, ti] if 0 <= ti < v else z.dtype.type(math.nan)
        losses[i] = (mt - picked) + log_s         # m - picked first, as the reference


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], int64[::1], ft[::1], ft[:, ::1]))
def _backward(z, lse, t, dloss, dz):
    # z, dz: (N, V); lse: (N, 1); t: (N,) int64; dloss: (1,) the upstream gradient
    i = cuda.blockIdx.x
    v = z.shape[1]
    ft = z.dtype.type
    zero, one = ft(0.0), ft(1.0)
    scale = dloss[0] / ft(z.shape[0])
    l = lse[i, 0]
    l = zero if l == ft(-math.inf) else l         # all -inf row: p = 0, as softmax's
    ti = t[i]
    for j in range(cuda.threadIdx.x, v, cuda.blockDim.x):
        p = math.exp(z[i, j] - l)
        dz[i, j] = (p - one) * scale if j == ti else p * scale


def cross_entropy_forward(logits, targets):
    mod = array_module(logits)
    dt = float_dtype(logits)
    v = logits.shape[-1]
    z = mod.ascontiguousarray(logits, dtype=dt).reshape(-1, v)         # (N, V)
    t = targets.reshape(-1)                                             # (N,)
    n = z.shape[0]
    lse = mod.empty((n, 1), dt)
    losses = mod.empty(n, dt)                                           # (N,)
    if n:
        _forward[n, threads_for(v), stream_for(z)](
            z, mod.ascontiguousarray(t, dtype=mod.int64), lse, losses)
    # the mean over rows in float64 (N values, not per element): 0-d, on the device
    loss = losses.mean(dtype=mod.float64).astype(dt)
    return loss, CrossEntropyCache(z, lse, t, tuple(logits.shape))


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    mod = array_module(cache.logits)
    z = mod.ascontiguousarray(cache.logits)                             # (N, V)
    n, v = z.shape
    dt = z.dtype
    dz = mod.empty_like(z)
    if n:
        d = mod.asarray(dloss, dtype=dt).reshape(1)                     # stays on the device
        _backward[n, threads_for(v), stream_for(z)](
            z, mod.ascontiguousarray(cache.lse, dtype=dt),
            mod.ascontiguousarray(cache.targets.reshape(-1), dtype=mod.int64), d, dz)
    return dz.reshape(cache.logits_shape)
