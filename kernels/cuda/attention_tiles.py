"""The flash-attention kernels behind attention.py (which holds the design and cost model).

One thread per query row (forward, dQ) or key row (dK/dV) keeps that row's state in
`cuda.local.array`s; the block walks over tiles of the other side (K/V, or Q/dO), which all its
threads copy into shared memory together (contiguous rows: coalesced) and then read in
lockstep, every thread the same element (a broadcast, no bank conflicts).

Precision, as the other CUDA kernels: everything in the input's dtype (a float32 kernel has
no f64 instruction but its scale argument's conversion). Long sums are two-level: a tile's
partial from 0, then added to the running total (chains of a tile and of S/tile, not of S).
Every score and every dp comes from `_dot` in one order, so the backward recomputes the
forward's scores bit for bit: a query with one visible key gets p = 1 and, as in the
reference, a gradient of exactly 0 from it.
"""
from __future__ import annotations

import math

from numba import boolean, cuda, float64, int64

from ._common import kernel, simulator

# Compile-time sizes (shared and local arrays); under the simulator every GPU thread is a
# Python thread, so blocks are tiny there and tests reach several tiles with short sequences.
DMAX = 128                            # widest d, dv in the kernels (wider: attention.py falls back)
ROWS = 4 if simulator() else 128      # rows per block, one thread each (grid.y: T/ROWS or S/ROWS)
TILE_ROWS = 3 if simulator() else 32  # most rows in a shared tile (per-thread p/dS buffers)
TILE = DMAX if simulator() else 2048  # elements of a shared tile (8 KiB f32, 16 f64), >= DMAX
NINF = -math.inf


def tile_rows(d: int, dv: int) -> int:
    """Rows per shared tile for widths d, dv <= DMAX: 16 at 128, 32 at 64 (TILE_ROWS)."""
    return max(1, min(TILE_ROWS, TILE // max(d, dv, 1)))


@cuda.jit(device=True)
def _dot(x, i0, y, j0, n):
    """Σ_c x[i0 + c]·y[j0 + c] in x's dtype, in one fixed order: every score and every dp is
    formed here, so forward and backward agree bit for bit."""
    acc = x.dtype.type(0.0)
    for c in range(n):
        acc += x[i0 + c] * y[j0 + c]
    return acc


@cuda.jit(device=True)
def _load(tile, a, h, r0, n):
    """Rows r0 .. r0+n-1 of a[h] (n·w contiguous elements) into the flat shared tile (n, w),
    by the whole block: consecutive threads copy consecutive elements."""
    w = a.shape[2]
    for e in range(cuda.threadIdx.x, n * w, cuda.blockDim.x):
        tile[e] = a[h, r0 + e // w, e % w]


@cuda.jit(device=True)
def _seen(i, off, k0, n, causal):
    """How many keys of the tile [k0, k0 + n) query i sees (causal: j <= i + off)."""
    return n if not causal else min(n, max(0, i + off - k0 + 1))


@cuda.jit(device=True)
def _key_end(q1, t, s, causal):
    """Keys any query below q1 sees: tiles from here on are above the diagonal, skipped."""
    return s if not causal else min(s, max(0, min(q1, t) + s - t))


@kernel(lambda ft: (ft[:, :, ::1], ft[:, :, ::1], ft[:, :, ::1], float64, boolean, int64,
                    ft[:, :, ::1], ft[:, ::1]))
def _forward(q, k, v, scale, causal, bc, out, lse):
    # q (BH, T, d), k (BH, S, d), v (BH, S, dv) -> out (BH, T, dv), lse (BH, T); bc keys a tile
    ft = q.dtype
    ks = cuda.shared.array(TILE, ft)               # K tile (bc, d)
    vs = cuda.shared.array(TILE, ft)               # V tile (bc, dv)
    qi = cuda.local.array(DMAX, ft)                # this thread's query
    acc = cuda.local.array(DMAX, ft)               # its running Σ p·v (rescaled with m)
    p = cuda.local.array(TILE_ROWS, ft)            # its scores, then p, on the current tile
    h, t, d = cuda.blockIdx.x, q.shape[1], q.shape[2]
    s_len, dv = k.shape[1], v.shape[2]
    q0 = (cuda.gridDim.y - 1 - cuda.blockIdx.y) * ROWS   # busiest (causal: last) blocks first
    i = q0 + cuda.threadIdx.x
    live = i < t                                   # idle rows still copy tiles and sync
    off = s_len - t
    sc = ft.type(scale)
    m = ft.type(NINF)                              # running max of the scores
    l = ft.type(0.0)                               # running Σ exp(s - m)
    if live:
        for c in range(d):
            qi[c] = q[h, i, c]
        for c in range(dv):
            acc[c] = 0.0
    for k0 in range(0, _key_end(q0 + ROWS, t, s_len, causal), bc):
        n = min(bc, s_len - k0)
        _load(ks, k, h, k0, n)
        _load(vs, v, h, k0, n)
        cuda.syncthreads()
        lim = _seen(i, off, k0, n, causal) if live else 0
        mt = m
        for j in range(lim):
            s = _dot(qi, 0, ks, j * d, d) * sc
            p[j] = s
            # max drops a NaN (Python's and the GPU's fmax alike): a NaN score must reach the
            # row's max, its sum and its output, as in the reference
            mt = max(mt, s) if s == s and mt == mt else s + mt
        if mt != NINF:                             # some visible key so far
            alpha = ft.type(math.exp(m - mt))      # 0 on the first such tile (m = -inf)
            lt = ft.type(0.0)
            for j in range(lim):
                p[j] = ft.type(math.exp(p[j] - mt))
                lt += p[j]
            l = l * alpha + lt                     # two-level sums: a tile's from 0, then
            for c in range(dv):                    # added (chains of bc and S/bc, not S)
                a = ft.type(0.0)
                for j in range(lim):
                    a += p[j] * vs[j * dv + c]
                acc[c] = acc[c] * alpha + a
            m = mt
        cuda.syncthreads()                         # tile read by all before it is replaced
    if live:
        if l != 0.0:                               # NaN (a NaN input) stays NaN
            for c in range(dv):
                out[h, i, c] = acc[c] / l
            lse[h, i] = m + ft.type(math.log(l))
        else:                                      # no visible key: zeros, lse -inf
            for c in range(dv):
                out[h, i, c] = 0.0
            lse[h, i] = NINF


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], ft[::1]))
def _delta(do, o, delta):
    # do, o (N, dv) -> delta (N,) = Σ_c dO·O = Σ_j p·dp per query row
    for r in range(cuda.grid(1), do.shape[0], cuda.gridsize(1)):
        delta[r] = _dot(do[r], 0, o[r], 0, do.shape[1])


@kernel(lambda ft: (ft[:, :, ::1], ft[:, :, ::1], ft[:, :, ::1], ft[:, :, ::1], ft[:, ::1],
                    ft[:, ::1], float64, boolean, int64, ft[:, :, ::1]))
def _dq(q, k, v, do, lse, delta, scale, causal, bc, dq):
    # q, dq (BH, T, d), k (BH, S, d), v (BH, S, dv), do (BH, T, dv), lse, delta (BH, T):
    # dq_i = scale · Σ_j p_ij (dp_ij - D_i) k_j over the visible key tiles, as in the forward
    ft = q.dtype
    ks = cuda.shared.array(TILE, ft)               # K tile (bc, d)
    vs = cuda.shared.array(TILE, ft)               # V tile (bc, dv)
    qi = cuda.local.array(DMAX, ft)
    doi = cuda.local.array(DMAX, ft)
    acc = cuda.local.array(DMAX, ft)               # Σ dS·k
    g = cuda.local.array(TILE_ROWS, ft)            # dS on the current tile
    h, t, d = cuda.blockIdx.x, q.shape[1], q.shape[2]
    s_len, dv = k.shape[1], v.shape[2]
    q0 = (cuda.gridDim.y - 1 - cuda.blockIdx.y) * ROWS
    i = q0 + cuda.threadIdx.x
    sc = ft.type(scale)
    L = ft.type(NINF)
    dd = ft.type(0.0)
    if i < t:
        L = lse[h, i]
        dd = delta[h, i]
        for c in range(d):
            qi[c] = q[h, i, c]
            acc[c] = 0.0
        for c in range(dv):
            doi[c] = do[h, i, c]
    live = L != NINF                               # past T, or no visible key: dq = 0
    for k0 in range(0, _key_end(q0 + ROWS, t, s_len, causal), bc):
        n = min(bc, s_len - k0)
        _load(ks, k, h, k0, n)
        _load(vs, v, h, k0, n)
        cuda.syncthreads()
        lim = _seen(i, s_len - t, k0, n, causal) if live else 0
        for j in range(lim):
            pj = ft.type(math.exp(_dot(qi, 0, ks, j * d, d) * sc - L))
            g[j] = pj * (_dot(doi, 0, vs, j * dv, dv) - dd)
        for c in range(d):
            a = ft.type(0.0)
            for j in range(lim):
                a += g[j] * ks[j * d + c]
            acc[c] += a
        cuda.syncthreads()
    if i < t:
        for c in range(d):
            dq[h, i, c] = acc[c] * sc


@kernel(lambda ft: (ft[:, :, ::1], ft[:, :, ::1], ft[:, :, ::1], ft[:, :, ::1], ft[:, ::1],
                    ft[:, ::1], float64, boolean, int64, ft[:, :, ::1], ft[:, :, ::1]))
def _dkdv(q, k, v, do, lse, delta, scale, causal, bq, dk, dv_out):
    # one thread per key j: dv_j = Σ_i p_ij dO_i, dk_j = scale · Σ_i dS_ij q_i over the query
    # tiles that see it (causal: from query j - (S - T) on); shapes as in _dq
    ft = q.dtype
    qs = cuda.shared.array(TILE, ft)               # Q tile (bq, d)
    dos = cuda.shared.array(TILE, ft)              # dO tile (bq, dv)
    ls = cuda.shared.array(TILE_ROWS, ft)          # its lse
    ds = cuda.shared.array(TILE_ROWS, ft)          # its D
    kj = cuda.local.array(DMAX, ft)
    vj = cuda.local.array(DMAX, ft)
    dka = cuda.local.array(DMAX, ft)
    dva = cuda.local.array(DMAX, ft)
    pb = cuda.local.array(TILE_ROWS, ft)           # p on the current tile
    gb = cuda.local.array(TILE_ROWS, ft)           # dS on the current tile
    h, t, d = cuda.blockIdx.x, q.shape[1], q.shape[2]
    s_len, dv = k.shape[1], v.shape[2]
    j0 = (cuda.gridDim.y - 1 - cuda.blockIdx.y) * ROWS
    j = j0 + cuda.threadIdx.x
    live = j < s_len
    off = s_len - t                                # query i sees key j when j <= i + off
    sc = ft.type(scale)
    if live:
        for c in range(d):
            kj[c] = k[h, j, c]
            dka[c] = 0.0
        for c in range(dv):
            vj[c] = v[h, j, c]
            dva[c] = 0.0
    for q0 in range(0 if not causal else max(0, j0 - off), t, bq):
        n = min(bq, t - q0)
        _load(qs, q, h, q0, n)
        _load(dos, do, h, q0, n)
        for e in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            ls[e] = lse[h, q0 + e]
            ds[e] = delta[h, q0 + e]
        cuda.syncthreads()
        first = n
        if live:
            first = 0 if not causal else min(n, max(0, j - off - q0))
        for e in range(first, n):
            pb[e] = 0.0
            gb[e] = 0.0
            if ls[e] != NINF:                      # a query without keys adds nothing
                pb[e] = ft.type(math.exp(_dot(qs, e * d, kj, 0, d) * sc - ls[e]))
                gb[e] = pb[e] * (_dot(dos, e * dv, vj, 0, dv) - ds[e])
        for c in range(dv):                        # two-level sums, as in the forward
            a = ft.type(0.0)
            for e in range(first, n):
                a += pb[e] * dos[e * dv + c]
            dva[c] += a
        for c in range(d):
            a = ft.type(0.0)
            for e in range(first, n):
                a += gb[e] * qs[e * d + c]
            dka[c] += a
        cuda.syncthreads()
    if live:
        for c in range(d):
            dk[h, j, c] = dka[c] * sc
        for c in range(dv):
            dv_out[h, j, c] = dva[c]
