"""Numba CPU kernels against the reference: error budgets, fwd/bwd cross-pairing, determinism.

Every case runs the reference in the kernel's dtype (its own error sets the budget) and in a
wider dtype (float32 -> float64, float64 -> long double) as the exact answer, then checks
every pairing of a kernel or reference forward with a kernel or reference backward: any
forward must pair with any backward, since they share the cache type.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import nanonorm
import nanonorm.functional as F
from nanonorm.dispatch import implementation_for
from nanonorm.kernels.cpu import KERNELS as K
from nanonorm.ops.registry import KERNELS as R
from nanonorm.testing import assert_close_budget
from nanonorm.testing.strategies import dtypes, float_arrays, shapes

WIDER = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}


def _arrays(result):
    """The arrays in an op's result (out of (out, cache), or a tuple of grads)."""
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[1], "_fields"):
        result = result[0]
    items = result if isinstance(result, tuple) else (result,)
    return [np.asarray(a) for a in items if a is not None]


def _cast(args, dt):
    return tuple(a.astype(dt) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
                 for a in args)


def check_pairings(fwd, bwd, args, dy, dtype, fwd_kw=None, name=""):
    """Budget-check kernel fwd, and bwd for (K,K), (K,R), (R,K) pairings; return K,K results."""
    fwd_kw = fwd_kw or {}
    dtype = np.dtype(dtype)
    wide = WIDER[dtype]
    a, a_wide = _cast(args, dtype), _cast(args, wide)
    dy, dy_wide = dy.astype(dtype), dy.astype(wide)
    exact_out, exact_cache = R[fwd](*a_wide, **fwd_kw)
    exact_grads = _arrays(R[bwd](dy_wide, exact_cache))
    ref_out, ref_cache = R[fwd](*a, **fwd_kw)
    ref_grads = _arrays(R[bwd](dy, ref_cache))
    k_out, k_cache = K[fwd](*a, **fwd_kw)
    assert type(k_cache) is type(ref_cache)
    assert np.asarray(k_out).dtype == np.asarray(ref_out).dtype
    assert_close_budget(k_out, ref_out, exact_out, name=f"{name} forward")
    results = {}
    for fi, bi in (("K", "K"), ("K", "R"), ("R", "K")):
        cache = k_cache if fi == "K" else ref_cache
        grads = _arrays((K if bi == "K" else R)[bwd](dy, cache))
        assert len(grads) == len(ref_grads)
        for i, (g, r, e) in enumerate(zip(grads, ref_grads, exact_grads)):
            assert g.dtype == r.dtype and g.shape == r.shape
            assert_close_budget(g, r, e, name=f"{name} grad {i} ({fi} fwd, {bi} bwd)")
        results[fi + bi] = grads
    return k_out, results["KK"]


def assert_deterministic(fn):
    first, second = _arrays(fn()), _arrays(fn())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# dispatch ------------------------------------------------------------------------------------

def test_dispatch_prefers_numba_for_numpy():
    x = np.zeros((2, 3), np.float32)
    for op in K:
        assert implementation_for(op, x) == "numba", op
    with nanonorm.use_impl("reference"):
        assert implementation_for("layer_norm_forward", x) == "reference"
    # the functional API runs the kernel: its cache came from the kernel wrapper
    y, cache = F.layer_norm_forward(x + 1.0, (3,))
    assert cache.x.flags.c_contiguous and y.shape == x.shape


# LayerNorm -----------------------------------------------------------------------------------

@st.composite
def ln_case(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=9))
    k = draw(st.integers(1, len(shape)))
    dims = shape[len(shape) - k:]
    x = draw(float_arrays(shape, np.float64))
    w = draw(float_arrays(dims, np.float64, kinds=("normal",))) if draw(st.booleans()) else None
    b = draw(float_arrays(dims, np.float64, kinds=("normal",))) if draw(st.booleans()) else None
    dy = draw(float_arrays(shape, np.float64, kinds=("normal",)))
    return x, dims, w, b, dy


@given(case=ln_case(), dtype=dtypes())
def test_layer_norm(case, dtype):
    x, dims, w, b, dy = case
    check_pairings("layer_norm_forward", "layer_norm_backward", (x, dims, w, b), dy, dtype,
                   name="layer_norm")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_hard_rows(dtype):
    rng = np.random.default_rng(0)
    c = 771  # longer than a vector, not a multiple of 8
    big = 1e18 + rng.standard_normal((3, c)) * 1e16                   # huge mean, wide spread
    const = np.full((2, c), 1e3 + 0.1)                                  # exact xhat = 0
    x = np.concatenate([big, const]).astype(dtype)
    y, cache = K["layer_norm_forward"](x, (c,))
    assert np.array_equal(y[3:], np.zeros((2, c), dtype))
    exact = R["layer_norm_forward"](x.astype(np.longdouble), (c,))[0]
    ref = R["layer_norm_forward"](x, (c,))[0]
    assert_close_budget(y, ref, exact, name="large-magnitude rows")
    np.testing.assert_allclose(y[:3].mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(y[:3].std(axis=1), 1.0, rtol=1e-4)


def test_layer_norm_deterministic():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((517, 96)).astype(np.float32)
    w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, cache = K["layer_norm_forward"](x, (96,), w, b)
    assert_deterministic(lambda: K["layer_norm_forward"](x, (96,), w, b))
    assert_deterministic(lambda: K["layer_norm_backward"](dy, cache))
