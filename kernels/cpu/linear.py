"""linear forward and backward on NumPy arrays: BLAS products split over nanonorm's threads.

Mirrors `nanonorm/ops/linear.py` (LinearCache: x, weight, has_bias; a transposed weight view,
GPT-2's tied unembedding wteᵀ, gets its dweight in the same layout). The arithmetic is BLAS's,
as the reference's; what differs is who runs it: each product is cut into blocks of output
rows, one pool task each, with BLAS on one thread, so BLAS's own workers never spin beside the
Numba kernels that follow (kernels/cpu/pool.py). Every output element still comes from one BLAS
call over the whole reduction, so the split changes no bit.
"""
from __future__ import annotations

import math

import numpy as np

from nanonorm.ops.linear import LinearCache, transposed_view
from . import pool
from ._common import float_dtype


def _products(out, a, b, reduce_len: int) -> None:
    """out = a @ b over the pool: out's rows in blocks (a (M, K), b (K, N), out (M, N))."""
    # a task of MIN_TASK_WORK elements ~ 2.5M multiply-adds (what waking a thread costs); 2
    # per thread: BLAS's blocks lose efficiency when cut finer (~15% at 4 per thread on
    # (1024, 768)·(768, 3072)), and 2 still let a thread on a busy core take fewer
    ntasks, per = pool.tasks(out.shape[0], out.shape[1] * max(1, reduce_len) // 64,
                             per_thread=2)

    def block(task):
        rows = slice(task * per, (task + 1) * per)
        np.matmul(a[rows], b, out=out[rows])

    with pool.blas_single_threaded():
        pool.run(block, ntasks)


def linear_forward(x, weight, bias=None):
    dt = float_dtype(x, weight, bias)
    n_in, n_out = weight.shape
    n = math.prod(x.shape[:-1])
    x2 = np.ascontiguousarray(x).reshape(n, n_in)                    # (N, in)
    y = np.empty((n, n_out), dt)                                     # (N, out)
    _products(y, x2, weight, n_in)
    if bias is not None:
        y += bias
    return y.reshape(*x.shape[:-1], n_out), LinearCache(x, weight, bias is not None)


def linear_backward(dy, cache: LinearCache):
    x, w = cache.x, cache.weight
    dt = float_dtype(dy, x, w)
    n_in, n_out = w.shape
    n = math.prod(x.shape[:-1])
    dy2 = np.ascontiguousarray(dy).reshape(n, n_out)                 # (N, out)
    x2 = np.ascontiguousarray(x).reshape(n, n_in)                    # (N, in)
    dx = np.empty((n, n_in), dt)
    _products(dx, dy2, w.T, n_out)                                   # dy · wᵀ
    if transposed_view(w):
        # the tied unembedding: dwᵀ (out, in) contiguous, ready for the embedding's gradient
        dwt = np.empty((n_out, n_in), dt)
        _products(dwt, dy2.T, x2, n)
        dw = dwt.T                                                   # (in, out) view
    else:
        dw = np.empty((n_in, n_out), dt)
        _products(dw, x2.T, dy2, n)                                  # xᵀ · dy
    db = dy2.sum(axis=0) if cache.has_bias else None                 # (out,)
    return dx.reshape(x.shape), dw, db
