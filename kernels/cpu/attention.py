"""Scaled dot-product attention, flash-style, on NumPy arrays: BLAS tiles + Numba softmax.

Mirrors `nanonorm/ops/attention.py`; its forward keeps an `AttentionLseCache` (the (..., T, 1)
row log-sum-exp and the causal flag) instead of the (T, S) probabilities: memory O(T·d) per
head. The reference backward recomputes p from it, and this backward takes a reference
`AttentionCache` to the reference formula, so any forward pairs with any backward.

Forward: for a group of HG heads and a block of BR queries, key tiles of BC run through
  S = Q Kᵀ (BLAS) -> Numba: scale, mask, online-softmax update of (m, l), P = exp(S - m) in
  place, rescale the accumulator -> acc += P V (BLAS); finally O = acc / l, lse = m + log l.
The tile (HG, BR, BC) stays in L2/L3; with S <= BC a query block has one tile, so the
online rescaling never runs and P V goes straight into the output.
Backward, per query block over all its visible keys:
  S = Q Kᵀ, dP = dO Vᵀ (BLAS) -> Numba: P = exp(S·scale - lse), D = Σ P∘dP,
  dS = P∘(dP - D)·scale -> dV += Pᵀ dO, dQ = dS K, dK += dSᵀ Q (BLAS).
FLOPs (non-causal): fwd 4·BH·T·S·d, bwd 10·BH·T·S·d (+ recompute); causal about half.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from nanonorm.ops.attention import (AttentionLseCache,
                                   scaled_dot_product_attention_backward as reference_backward)
from . import pool
from ._common import TASK_KERNEL, float_dtype, vexp_subnormal as vexp
from .lanes import lane_dot, lane_max, lane_sum

BR = 128      # queries per block
BC = 1024     # keys per tile (forward): one tile per query block up to S = 1024
TILE = 1 << 20  # elements of a score tile per head group: HG·BR·BC ≈ 4 MB in float32


def _visible(i, off, k0, bc, causal):
    """Keys of the tile [k0, k0 + bc) that query i (block-local row + its offset) may see."""
    return bc if not causal else min(bc, max(0, i + off - k0 + 1))


_visible = njit(cache=True, inline="always")(_visible)


@njit(**TASK_KERNEL)
def _online_tile(s, scale, causal, off, k0, m, l, acc):
    # s: (HG, br, bc) scores in, unnormalised probabilities out (0 where masked);
    # m: (HG, br) running max, l: (HG, br) float64 running sum, acc: (HG, br, dv) running P·V.
    # Query row i of the block sits at global key position i + off (off = q0 + S - T).
    # scale comes in the scores' dtype: the product rounds as the reference's does.
    hg, br, bc = s.shape
    for r in range(hg * br):
        h, i = r // br, r % br
        row = s[h, i]
        lim = _visible(i, off, k0, bc, causal)
        m_old = m[h, i]
        if scale > 0:                          # rounding is monotone: max(s)·scale exactly
            mx = max(m_old, lane_max(row, lim, row.dtype.type(-np.inf)) * scale)
        else:
            mx = m_old
            for j in range(lim):
                mx = max(mx, row[j] * scale)
        if mx == -np.inf:                      # no visible key yet: nothing to add,
            for j in range(lim):               # unless the max dropped a NaN score
                if row[j] != row[j]:
                    l[h, i] = np.nan
            row[:] = 0.0
            continue
        alpha = vexp(m_old - mx)               # 0 on the first visible tile (m_old = -inf)
        for j in range(lim):
            row[j] = vexp(row[j] * scale - mx)
        row[lim:] = 0.0
        l[h, i] = l[h, i] * alpha + lane_sum(row, 0, lim)
        m[h, i] = mx
        if alpha != 1.0:
            a = acc[h, i]
            for j in range(a.shape[0]):
                a[j] *= alpha


@njit(**TASK_KERNEL)
def _finish(acc, m, l, lse):
    # acc: (HG, br, dv) -> O in place; lse: (HG, br, 1); a row with no visible key: O 0, lse -inf
    hg, br, dv = acc.shape
    for r in range(hg * br):
        h, i = r // br, r % br
        a = acc[h, i]
        if l[h, i] != 0.0:                    # NaN (a NaN score or value) stays NaN
            inv = acc.dtype.type(1.0 / l[h, i])
            for j in range(dv):
                a[j] *= inv
            lse[h, i, 0] = m[h, i] + math.log(l[h, i])
        else:
            a[:] = 0.0
            lse[h, i, 0] = -np.inf


@njit(**TASK_KERNEL)
def _softmax_grad(s, dp, lse, scale, causal, off):
    # s: (HG, br, kv) scores -> P in place; dp: (HG, br, kv) dO·Vᵀ -> dS·scale in place;
    # lse: (HG, br, 1). Masked entries and rows without a visible key get P = dS = 0.
    hg, br, kv = s.shape
    for r in range(hg * br):
        h, i = r // br, r % br
        row, drow = s[h, i], dp[h, i]
        lim = _visible(i, off, 0, kv, causal)
        L = lse[h, i, 0]
        if L == -np.inf:
            lim = 0
        for j in range(lim):
            row[j] = vexp(row[j] * scale - L)
        dd = s.dtype.type(lane_dot(row, drow, 0, lim))
        for j in range(lim):
            drow[j] = row[j] * (drow[j] - dd) * scale
        row[lim:] = 0.0
        drow[lim:] = 0.0


def _tile(buf, *shape):
    """A C-contiguous `shape` view at the start of the flat scratch buffer `buf`: BLAS writes
    a contiguous tile much faster than a strided slice of a larger one."""
    return buf[:math.prod(shape)].reshape(shape)


def _heads(a, dt):
    """(..., n, c) -> contiguous (BH, n, c) in dtype dt (any of the sizes may be 0)."""
    return np.ascontiguousarray(a, dtype=dt).reshape((math.prod(a.shape[:-2]),) + a.shape[-2:])


def _head_groups(bh: int, hg_max: int) -> list[tuple[int, int]]:
    """Head ranges [h0, h1), one per pool task: at most hg_max heads (the score tile's
    budget), and small enough that every thread gets several."""
    hg = max(1, min(hg_max, -(-bh // (4 * pool.threads()))))
    return [(h0, min(bh, h0 + hg)) for h0 in range(0, bh, hg)]


def _kend(q1, t, s, causal):
    """Keys visible to any query of a block ending at q1 (exclusive)."""
    return s if not causal else min(s, max(0, q1 + s - t))


def scaled_dot_product_attention_forward(q, k, v, *, causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    dt = float_dtype(q, k, v)
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q3, k3, v3 = (_heads(np.broadcast_to(a, lead + a.shape[-2:]), dt) for a in (q, k, v))
    bh, t, d = q3.shape
    s_len, dv = k3.shape[1], v3.shape[2]
    out = np.zeros((bh, t, dv), dt)                                  # (BH, T, dv) accumulator
    lse = np.empty((bh, t, 1), dt)                                   # (BH, T, 1)
    bc = max(1, min(BC, s_len))
    groups = _head_groups(bh, TILE // (BR * bc))
    off = s_len - t                                                  # query i sees keys <= i+off

    def group(task):              # a pool task: one head group, every query block, in order
        h0, h1 = groups[task]
        g = h1 - h0
        sbuf = np.empty(g * BR * bc, dt)                             # score tile, reused
        pv = np.empty(g * BR * dv, dt)                               # P·V of one tile
        m, l = np.empty((g, BR), dt), np.empty((g, BR), np.float64)
        for q0 in range(0, t, BR):
            q1 = min(t, q0 + BR)
            br = q1 - q0
            mb, lb = m[:, :br], l[:, :br]
            mb.fill(-np.inf)
            lb.fill(0.0)
            acc = out[h0:h1, q0:q1]                                  # (g, br, dv) view
            for k0 in range(0, _kend(q1, t, s_len, causal), bc):
                k1 = min(_kend(q1, t, s_len, causal), k0 + bc)
                st = _tile(sbuf, g, br, k1 - k0)
                np.matmul(q3[h0:h1, q0:q1], k3[h0:h1, k0:k1].transpose(0, 2, 1), out=st)
                _online_tile(st, dt.type(scale), causal, q0 + off, k0, mb, lb, acc)
                if k0 == 0:                                          # acc is all zeros
                    np.matmul(st, v3[h0:h1, k0:k1], out=acc)
                else:
                    tile_pv = _tile(pv, g, br, dv)
                    np.matmul(st, v3[h0:h1, k0:k1], out=tile_pv)
                    acc += tile_pv
            _finish(acc, mb, lb, lse[h0:h1, q0:q1])

    with pool.blas_single_threaded():       # the matmuls run on the pool's threads instead
        pool.run(group, len(groups))
    return (out.reshape(lead + (t, dv)),
            AttentionLseCache(q3.reshape(lead + (t, d)), k3.reshape(lead + (s_len, d)),
                              v3.reshape(lead + (s_len, dv)), lse.reshape(lead + (t, 1)),
                              bool(causal), scale))


def scaled_dot_product_attention_backward(dy, cache):
    if not isinstance(cache, AttentionLseCache):         # a reference cache: its formula
        return reference_backward(dy, cache)
    q, k, v, scale = cache.q, cache.k, cache.v, cache.scale
    dt = float_dtype(dy, q, k, v)
    lead = q.shape[:-2]
    q3, k3, v3, do3 = (_heads(a, dt) for a in (q, k, v, dy))
    lse3 = _heads(cache.lse, dt)                                     # (BH, T, 1)
    bh, t, d = q3.shape
    s_len, dv = k3.shape[1], v3.shape[2]
    causal = cache.causal
    dq = np.empty_like(q3)
    dk = np.zeros_like(k3)
    dvv = np.zeros_like(v3)
    groups = _head_groups(bh, TILE // (BR * max(1, s_len)))

    def group(task):              # a pool task: one head group, every query block, in order
        h0, h1 = groups[task]
        g = h1 - h0
        sbuf = np.empty(g * BR * s_len, dt)                          # scores -> P
        dpbuf = np.empty(g * BR * s_len, dt)                         # dP -> dS·scale
        kbuf = np.empty(g * s_len * max(d, dv), dt)                  # a block's dK or dV part
        for q0 in range(0, t, BR):
            q1 = min(t, q0 + BR)
            br, kend = q1 - q0, _kend(q1, t, s_len, causal)
            if kend == 0:
                dq[h0:h1, q0:q1] = 0.0
                continue
            qb, dob = q3[h0:h1, q0:q1], do3[h0:h1, q0:q1]
            kb, vb = k3[h0:h1, :kend], v3[h0:h1, :kend]
            sb, dpb = _tile(sbuf, g, br, kend), _tile(dpbuf, g, br, kend)
            np.matmul(qb, kb.transpose(0, 2, 1), out=sb)
            np.matmul(dob, vb.transpose(0, 2, 1), out=dpb)
            _softmax_grad(sb, dpb, lse3[h0:h1, q0:q1], dt.type(scale), causal, q0 + s_len - t)
            part = _tile(kbuf, g, kend, dv)
            np.matmul(sb.transpose(0, 2, 1), dob, out=part)
            dvv[h0:h1, :kend] += part
            np.matmul(dpb, kb, out=dq[h0:h1, q0:q1])
            part = _tile(kbuf, g, kend, d)
            np.matmul(dpb.transpose(0, 2, 1), qb, out=part)
            dk[h0:h1, :kend] += part

    with pool.blas_single_threaded():
        pool.run(group, len(groups))
    return (dq.reshape(lead + (t, d)), dk.reshape(lead + (s_len, d)),
            dvv.reshape(lead + (s_len, dv)))
