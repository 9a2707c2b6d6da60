"""A kernel table against the reference: every forward/backward pairing, under the error budget.

Kernels share the reference's cache types (those the op declares) so that any forward pairs with any
backward; this checks the kernel's forward and the (kernel, kernel), (kernel, reference) and
(reference, kernel) backward pairings against the reference in the same dtype and a wider-dtype
"exact" run (`assert_close_budget`). Host (NumPy) arrays in and out: a table of device kernels is
checked through a simulator or a wrapper that moves arrays.
"""
from __future__ import annotations

import numpy as np

from .budget import assert_close_budget

# the dtype each one is checked against ("exact"): float64, or long double for float64
WIDER = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}


def result_arrays(result) -> list[np.ndarray]:
    """The arrays in an op's result (out of (out, cache), or a tuple of grads), Nones dropped."""
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[1], "_fields"):
        result = result[0]
    items = result if isinstance(result, tuple) else (result,)
    return [np.asarray(a) for a in items if a is not None]


def cast_floats(args, dtype) -> tuple:
    """args with every floating NumPy array cast to dtype (ids and scalars unchanged)."""
    return tuple(a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in args)


def check_kernel_pairings(kernels: dict, fwd: str, bwd: str, args, dy, dtype, *, fwd_kw=None,
                          name: str = "", bwd_cond: float = 1.0, out_scale=None,
                          grad_scale=None):
    """Budget-check kernels[fwd], and kernels[bwd] in the three pairings with the reference;
    return the kernel's output and its (kernel, kernel) gradients.

    bwd_cond widens the backward's budget from a kernel-made cache (one that keeps less, e.g.
    attention's log-sum-exp instead of p); out_scale / grad_scale: the magnitude the forward /
    backward round at, where it exceeds the result's own (see assert_close_budget)."""
    from ..dispatch import kernels as table
    from ..opspec import spec_for

    reference = table("reference")
    fwd_kw = fwd_kw or {}
    dtype = np.dtype(dtype)
    wide = WIDER[dtype]
    a, a_wide = cast_floats(args, dtype), cast_floats(args, wide)
    dy, dy_wide = dy.astype(dtype), dy.astype(wide)
    exact_out, exact_cache = reference[fwd](*a_wide, **fwd_kw)
    exact_grads = result_arrays(reference[bwd](dy_wide, exact_cache))
    ref_out, ref_cache = reference[fwd](*a, **fwd_kw)
    ref_grads = result_arrays(reference[bwd](dy, ref_cache))
    k_out, k_cache = kernels[fwd](*a, **fwd_kw)
    declared = spec_for(fwd).cache
    assert isinstance(k_cache, declared), f"{type(k_cache).__name__} is not one of {declared}"
    assert np.asarray(k_out).dtype == np.asarray(ref_out).dtype
    assert np.shape(k_out) == np.shape(ref_out)
    assert_close_budget(k_out, ref_out, exact_out, scale=out_scale, name=f"{name} forward")
    results = {}
    for fi, bi in (("K", "K"), ("K", "R"), ("R", "K")):
        cache = k_cache if fi == "K" else ref_cache
        grads = result_arrays((kernels if bi == "K" else reference)[bwd](dy, cache))
        assert len(grads) == len(ref_grads)
        for i, (g, r, e) in enumerate(zip(grads, ref_grads, exact_grads)):
            assert g.dtype == r.dtype and g.shape == r.shape
            cond = bwd_cond if fi == "K" else 1.0          # a kernel-made cache
            assert_close_budget(g, r, e, factor=4.0 * cond, ulps=8.0 * cond, scale=grad_scale,
                                name=f"{name} grad {i} ({fi} fwd, {bi} bwd)")
        results[fi + bi] = grads
    return k_out, results["KK"]


def check_adamw_kernel(kernels: dict, shape, dtype, *, weight_decay: float = 0.1, seed: int = 0):
    """Three in-place `adamw_step`s of kernels against the reference (gradients of scale 1,
    1e-3 and 10) under the budget, for p, m and v; returns the kernel's (p, m, v)."""
    from ..dispatch import kernels as table

    reference = table("reference")
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(shape)
    grads = [rng.standard_normal(shape) * s for s in (1.0, 1e-3, 10.0)]
    hyper = dict(lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=weight_decay)

    def run(table, dt):
        p, m, v = p0.astype(dt), np.zeros(shape, dt), np.zeros(shape, dt)
        for step, g in enumerate(grads, start=1):
            assert table["adamw_step"](p, g.astype(dt), m, v, step=step, **hyper) is None
        return p, m, v

    exact, ref, got = run(reference, WIDER[dtype]), run(reference, dtype), run(kernels, dtype)
    for a, r, e, name in zip(got, ref, exact, "pmv"):
        assert a.dtype == dtype
        assert_close_budget(a, r, e, name=f"adamw {name}")
    return got
