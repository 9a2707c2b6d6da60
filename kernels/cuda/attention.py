"""Scaled dot-product attention on the GPU, flash-style: numba-cuda kernels (attention_tiles.py)
that never form the (T, S) scores, so memory is O(T·d) per head.

Same signatures as `nanonorm/ops/attention.py`; the forward keeps an `AttentionLseCache`
(q, k, v, the row log-sum-exp (..., T, 1), the output O), the backward recomputes
p = exp(s - lse) tile by tile. Leading dims of any rank become BH = B·NH heads.

Forward (`_forward`): a block of ROWS = 128 queries of one head, a thread per query, walks the
key tiles in shared memory (16 keys at d = 128, 32 at d <= 64): s = q·k·scale, the online
softmax update of the row's max m, sum l and O accumulator; tiles wholly above the causal
diagonal are skipped. Then O = acc / l, lse = m + log l. Grid (BH, ceil(T/128)), the busiest
(causal: last) query blocks first.
Backward, deterministic (no atomics), from D = rowsum(dO∘O) (`_delta`):
  `_dq`: a thread per query walks the key tiles: dq = scale·Σ_j p(dp - D)·k_j;
  `_dkdv`: a thread per key walks the query tiles that see it: dv = Σ_i p·dO_i,
  dk = scale·Σ_i p(dp - D)·q_i. Both recompute s and dp = dO·v.
D needs O: the cache keeps it (the output the caller holds anyway, so it must not be changed
in place before the backward: the FlashAttention-2 choice) rather than a third pass over all
keys for Σ_j p·dp; a cache without it (the Numba kernel's) gets O recomputed by the forward.
  FLOP (non-causal; causal about half): fwd 4·BH·T·S·d, bwd 14·BH·T·S·d (s and dp twice:
  the price of no atomics), on CUDA cores in the input's dtype (no tensor cores).
  DRAM bytes: fwd (2·T·d + 2·S·d + T)·BH·itemsize if the K/V tiles, read by ceil(T/128)
  blocks each, come from L2; bwd about twice that, plus O and dO.
What it does not do: with one thread per row every multiply-add also reads shared memory
(a broadcast) and the thread's row in local memory (up to 128 values: L1, not registers;
ptxas for sm_90: 66-93 registers, 1.1-2.3 KB of stack per thread in float32); q and O rows
are read and written one per thread (strided, not coalesced). Expect it well below cuBLAS and
FlashAttention; not yet run on a GPU. d or dv > DMAX = 128: the reference instead (cuBLAS
matmuls, the (T, S) probabilities kept: O(T·S) memory).
"""
from __future__ import annotations

import math

import numpy as np

from nanonorm.ops.attention import (
    AttentionLseCache, scaled_dot_product_attention_backward as reference_backward,
    scaled_dot_product_attention_forward as reference_forward)
from ._common import array_module, float_dtype, grid_1d, stream_for
from .attention_tiles import DMAX, ROWS, _delta, _dkdv, _dq, _forward, tile_rows


def _heads(mod, a, dt):
    """(..., n, c) -> C-contiguous (BH, n, c) in dtype dt (any size may be 0). A read-only
    NumPy array (the Numba kernel's cache) is copied: the simulator writes arguments back."""
    h = mod.ascontiguousarray(a, dtype=dt)
    h = h if mod is not np or h.flags.writeable else h.copy()
    return h.reshape((math.prod(a.shape[:-2]),) + a.shape[-2:])


def _grid(bh: int, n: int) -> tuple[int, int]:
    return bh, -(-n // ROWS)


def _attend(mod, q3, k3, v3, scale, causal):
    """out (BH, T, dv), lse (BH, T) by the forward kernel."""
    (bh, t, d), (s_len, dv) = q3.shape, v3.shape[1:]
    out = mod.empty((bh, t, dv), q3.dtype)                           # (BH, T, dv)
    lse = mod.empty((bh, t), q3.dtype)                               # (BH, T)
    if bh and t:
        _forward[_grid(bh, t), ROWS, stream_for(q3)](q3, k3, v3, scale, causal,
                                                     tile_rows(d, dv), out, lse)
    return out, lse


def scaled_dot_product_attention_forward(q, k, v, *, causal=False, scale=None):
    if q.shape[-1] > DMAX or v.shape[-1] > DMAX:     # wider than the kernels' row buffers
        return reference_forward(q, k, v, causal=causal, scale=scale)
    mod = array_module(q)
    dt = float_dtype(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    lead, t = q.shape[:-2], q.shape[-2]
    q3, k3, v3 = (_heads(mod, a, dt) for a in (q, k, v))          # (BH, T|S, d|dv)
    out, lse = _attend(mod, q3, k3, v3, scale, bool(causal))
    y = out.reshape(lead + out.shape[1:])                            # (..., T, dv)
    return y, AttentionLseCache(q3.reshape(q.shape), k3.reshape(k.shape), v3.reshape(v.shape),
                                lse.reshape(lead + (t, 1)), bool(causal), scale, y)


def scaled_dot_product_attention_backward(dy, cache):
    q, k, v = cache.q, cache.k, cache.v
    if not isinstance(cache, AttentionLseCache) or q.shape[-1] > DMAX or v.shape[-1] > DMAX:
        return reference_backward(dy, cache)         # the reference's p, or too wide
    mod = array_module(dy)
    dt = float_dtype(dy, q, k, v)
    q3, k3, v3, do3 = (_heads(mod, a, dt) for a in (q, k, v, dy))  # (BH, T|S, d|dv)
    (bh, t, d), (s_len, dv) = q3.shape, v3.shape[1:]
    lse = _heads(mod, cache.lse, dt).reshape(bh, t)                  # (BH, T)
    causal, scale = bool(cache.causal), float(cache.scale)
    o3 = (_heads(mod, cache.o, dt) if cache.o is not None             # (BH, T, dv)
          else _attend(mod, q3, k3, v3, scale, causal)[0])
    stream = stream_for(q3)
    delta = mod.empty(bh * t, dt)                                    # (BH·T,) D = Σ dO·O
    dq, dk, dvv = mod.empty_like(q3), mod.empty_like(k3), mod.empty_like(v3)
    if bh and t:
        _delta[grid_1d(bh * t, ROWS), ROWS, stream](do3.reshape(bh * t, dv),
                                                    o3.reshape(bh * t, dv), delta)
        _dq[_grid(bh, t), ROWS, stream](q3, k3, v3, do3, lse, delta.reshape(bh, t), scale,
                                        causal, tile_rows(d, dv), dq)
    if bh and s_len:
        _dkdv[_grid(bh, s_len), ROWS, stream](q3, k3, v3, do3, lse, delta.reshape(bh, t),
                                              scale, causal, tile_rows(d, dv), dk, dvv)
    return dq.reshape(q.shape), dk.reshape(k.shape), dvv.reshape(v.shape)
