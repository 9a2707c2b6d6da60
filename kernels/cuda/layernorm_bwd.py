"""LayerNorm backward as numba-cuda kernels: dx row by row, dγ/dβ in registers, partials once.

Block (b, tile) takes the rows [b·R, (b+1)·R) (R = N/G) and, of dx and of dγ/dβ, the
columns tile·W + t + k·nt (k < COLS, W = COLS·nt) of its thread t: one tile covers C <= 2048
at 256 threads. Per row it forms the row sums Σg and Σg·xhat (g = dy·γ), writes dx, and adds
the row's dy·xhat and dy to its COLS register accumulators: no global read-modify-write.
Wider rows (several tiles) get their row sums from `_sums` first (one block per row: one
more read of x and dy) instead of each tile summing the whole row. Each block writes its
(C,) dγ/dβ partial rows once; `_sum_partials` adds the G rows of each column in a fixed
order (a chain per thread over G/groups rows, then a tree over the groups), so results are
bit-identical run to run. Every sum is a pair in the input's dtype (see _common); a partial
row is rounded once, so dγ/dβ take G + 1 roundings where the reference's sequential sum
over the rows takes N - 1.
  LN bwd: read x, dy; write dx                 -> 3·N·C·itemsize bytes (C > W: 5·N·C·itemsize)
  partials: write, then read dγ/dβ (2, G, C)   -> 4·G·C·itemsize bytes (G = min(N, 512))
"""
from __future__ import annotations

from numba import boolean, cuda, int64

from ._common import (THREADS, acc_add, acc_total, array_module, block_sum2, float_dtype,
                      kernel, pick, stream_for, threads_for, tree_step)

# (GPU, simulator) geometry, see _common. Blocks: enough to fill an H100's 132 SMs several
# times over, few enough that the partials stay under ~10% of the traffic at C = 768.
BWD_BLOCKS, SIM_BWD_BLOCKS = 512, 3
# Columns per thread in registers (a compile-time constant: the unrolled loop keeps the
# accumulators out of local memory).
COLS = pick(8, 2)
# _sum_partials' block: (columns, row groups); groups a power of two for its tree.
SUM_BLOCK, SIM_SUM_BLOCK = (32, 8), (16, 2)


@cuda.jit(device=True)
def _row_sums(sh, dy, x, w, has_w, i, mh, r2):
    """(Σg, Σg·xhat) over row i, g = dy·γ, xhat = (x/2 - m/2)·2r, as pairs (see _common);
    every thread gets both. sh: 4 shared (THREADS,) scratch arrays."""
    zero = x.dtype.type(0.0)
    sg, eg, sgx, egx = zero, zero, zero, zero
    for j in range(cuda.threadIdx.x, x.shape[1], cuda.blockDim.x):
        xhat = (x[i, j] * x.dtype.type(0.5) - mh) * r2
        g = dy[i, j] * w[j] if has_w else dy[i, j]
        sg, eg = acc_add(sg, eg, g)
        sgx, egx = acc_add(sgx, egx, g * xhat)
    return block_sum2(sh[0], sh[1], sh[2], sh[3], sg, eg, sgx, egx)


@cuda.jit(device=True)
def _scratch(dtype):
    """4 shared (THREADS,) arrays: two pairs for block_sum2 (one call a line: the simulator
    tells shared arrays apart by their line)."""
    a = cuda.shared.array(THREADS, dtype)
    b = cuda.shared.array(THREADS, dtype)
    c = cuda.shared.array(THREADS, dtype)
    d = cuda.shared.array(THREADS, dtype)
    return a, b, c, d


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[::1], boolean,
                    ft[:, ::1]))
def _sums(dy, x, mean, rstd, w, has_w, sums):
    # block i = row i: sums (N, 2) = (Σg, Σg·xhat), for rows split into column tiles
    i = cuda.blockIdx.x
    half, two = x.dtype.type(0.5), x.dtype.type(2.0)
    sg, sgx = _row_sums(_scratch(x.dtype), dy, x, w, has_w, i, mean[i, 0] * half,
                        rstd[i, 0] * two)
    if cuda.threadIdx.x == 0:
        sums[i, 0] = sg
        sums[i, 1] = sgx


@kernel(lambda ft: (ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[:, ::1], ft[::1], boolean, int64,
                    ft[:, ::1], boolean, ft[:, ::1], ft[:, :, ::1]))
def _backward(dy, x, mean, rstd, w, has_w, rows, sums, have_sums, dx, part):
    # dy, x, dx: (N, C); mean, rstd: (N, 1); sums: (N, 2) from _sums if have_sums (several
    # column tiles), else formed here; part: (2, G, C) dγ, dβ partials, G = gridDim.x
    sh = _scratch(x.dtype)
    blk = cuda.blockIdx.x
    nt = cuda.blockDim.x
    c0 = cuda.blockIdx.y * nt * COLS + cuda.threadIdx.x     # this thread's first column
    n, c = x.shape
    ft = x.dtype.type
    zero, half, two, cf = ft(0.0), ft(0.5), ft(2.0), ft(c)   # typed: float32 stays float32
    dw = cuda.local.array(COLS, x.dtype)          # (COLS,) registers, columns c0 + k·nt:
    dwe = cuda.local.array(COLS, x.dtype)         # dγ = dw + dwe, dβ = db + dbe as pairs
    db = cuda.local.array(COLS, x.dtype)
    dbe = cuda.local.array(COLS, x.dtype)
    for k in range(COLS):
        dw[k], dwe[k], db[k], dbe[k] = zero, zero, zero, zero
    for i in range(blk * rows, min(n, (blk + 1) * rows)):
        mh, r = mean[i, 0] * half, rstd[i, 0]
        r2 = r * two                              # (x/2 - m/2)·2r: x - m cannot overflow
        if have_sums:                             # the same for the whole launch
            sg, sgx = sums[i, 0], sums[i, 1]
        else:
            sg, sgx = _row_sums(sh, dy, x, w, has_w, i, mh, r2)
        a, bb = sg / cf, sgx / cf
        for k in range(COLS):                     # constant trip count: unrolled
            j = c0 + k * nt
            if j < c:
                xhat = (x[i, j] * half - mh) * r2
                d = dy[i, j]
                g = d * w[j] if has_w else d
                dx[i, j] = r * (g - a - xhat * bb)
                dw[k], dwe[k] = acc_add(dw[k], dwe[k], d * xhat)
                db[k], dbe[k] = acc_add(db[k], dbe[k], d)
    for k in range(COLS):
        j = c0 + k * nt
        if j < c:
            part[0, blk, j] = acc_total(dw[k], dwe[k])
            part[1, blk, j] = acc_total(db[k], dbe[k])


@kernel(lambda ft: (ft[:, :, ::1], ft[:, ::1]))
def _sum_partials(part, out):
    # part: (2, G, C) -> out: (2, C). Thread (x, y) of block b: column b·blockDim.x + x,
    # partial rows y, y + blockDim.y, ... in order, then the groups y by a fixed tree; pairs
    # throughout (see _common)
    sh = _scratch(part.dtype)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    nx, ny = cuda.blockDim.x, cuda.blockDim.y
    j = cuda.blockIdx.x * nx + tx
    zero = part.dtype.type(0.0)
    sw, ew, sd, ed = zero, zero, zero, zero
    if j < part.shape[2]:
        for k in range(ty, part.shape[1], ny):
            sw, ew = acc_add(sw, ew, part[0, k, j])
            sd, ed = acc_add(sd, ed, part[1, k, j])
    slot = ty * nx + tx
    sh[0][slot], sh[1][slot], sh[2][slot], sh[3][slot] = sw, ew, sd, ed
    cuda.syncthreads()
    s = ny // 2
    while s > 0:
        if ty < s:
            tree_step(sh[0], sh[1], slot, s * nx)
            tree_step(sh[2], sh[3], slot, s * nx)
        cuda.syncthreads()
        s //= 2
    if ty == 0 and j < part.shape[2]:
        out[0, j] = acc_total(sh[0][tx], sh[1][tx])
        out[1, j] = acc_total(sh[2][tx], sh[3][tx])


def geometry(n: int, c: int) -> tuple[int, int, int, int]:
    """(blocks G, rows per block R, threads, column tiles) of the backward for (N, C) rows."""
    rows = -(-n // min(n, pick(BWD_BLOCKS, SIM_BWD_BLOCKS)))
    nt = threads_for(c)
    return -(-n // rows), rows, nt, -(-c // (COLS * nt))     # G: no block left empty


def layer_norm_backward(dy, cache):
    mod = array_module(dy)
    n, d = cache.x.shape
    dt = float_dtype(dy, cache.x)
    x2 = mod.ascontiguousarray(cache.x, dtype=dt)                      # (N, C)
    dy2 = mod.ascontiguousarray(dy, dtype=dt).reshape(n, d)            # (N, C)
    w = None if cache.weight is None else mod.ascontiguousarray(cache.weight, dtype=dt).reshape(d)
    mean = mod.ascontiguousarray(cache.mean, dtype=dt).reshape(n, 1)
    rstd = mod.ascontiguousarray(cache.rstd, dtype=dt).reshape(n, 1)
    dx = mod.empty((n, d), dt)
    out = mod.zeros((2, d), dt)                                         # dγ, dβ; no rows: 0
    if n and d:
        stream = stream_for(dy2)
        blocks, rows, nt, tiles = geometry(n, d)
        wk = mod.empty(0, dt) if w is None else w                      # (C,) or unused
        sums = mod.empty((n if tiles > 1 else 0, 2), dt)                # (N, 2) row sums
        if tiles > 1:                             # once per row, not once per tile
            _sums[n, nt, stream](dy2, x2, mean, rstd, wk, w is not None, sums)
        part = mod.empty((2, blocks, d), dt)                            # (2, G, C)
        _backward[(blocks, tiles), nt, stream](dy2, x2, mean, rstd, wk, w is not None, rows,
                                               sums, tiles > 1, dx, part)
        bx, by = pick(SUM_BLOCK, SIM_SUM_BLOCK)
        _sum_partials[-(-d // bx), (bx, by), stream](part, out)
    dw = None if w is None else out[0].reshape(cache.param_shape)
    db = out[1].reshape(cache.param_shape) if cache.has_bias else None
    return dx.reshape(cache.x_shape), dw, db
