"""LayerNorm reference: agreement with exact math, invariants, gradients, hard numerics."""
import math

import numpy as np
from hypothesis import assume, given, strategies as st

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.testing import check_gradients
from nanonorm.testing.strategies import KINDS, WELL_CONDITIONED, dtypes, float_arrays, shapes

import reference_math as rm
from backends import eps, host, libs, put


@st.composite
def ln_case(draw, dtype=dtypes(), magnitudes=(1e-3, 1.0, 1e3), kinds=KINDS):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=7))
    k = draw(st.integers(1, len(shape)))
    dims = shape[len(shape) - k:]
    x = draw(float_arrays(shape, dtype, magnitudes=magnitudes, kinds=kinds))
    with_w, with_b = draw(st.booleans()), draw(st.booleans())
    w = draw(float_arrays(dims, x.dtype, kinds=("normal",))) if with_w else None
    b = draw(float_arrays(dims, x.dtype, kinds=("normal",))) if with_b else None
    return x, dims, w, b


@libs
@given(case=ln_case())
def test_agrees_with_exact_math(lib, case):
    x, dims, w, b = case
    with use_impl("reference"):
        y = F.layer_norm(put(lib, x), dims, put(lib, w), put(lib, b))
    exact = rm.layer_norm(x, len(dims), w, b)
    assert str(y.dtype).endswith(str(x.dtype))
    wmax = 1.0 if w is None else float(np.max(np.abs(w)))
    bmax = 0.0 if b is None else float(np.max(np.abs(b)))
    # Conditioning: xhat = (x - mean) · rstd cannot be better than one rounding of x (and of
    # a mean that the dtype may not represent) times rstd, so the error scales with |x|·rstd.
    rows = x.reshape(-1, math.prod(dims)).astype(np.float64)
    cond = np.max(np.max(np.abs(rows), axis=1) / np.sqrt(np.var(rows, axis=1) + 1e-5))
    tol = 16 * eps(x.dtype) * ((1 + cond) * wmax * math.log2(2 * rows.shape[1]) + bmax)
    np.testing.assert_allclose(host(y), exact, rtol=0, atol=tol)


@libs
@given(case=ln_case(dtype=st.just(np.float64), magnitudes=(1.0,)),
       a=st.floats(0.5, 50.0), c=st.floats(-50.0, 50.0))
def test_invariant_to_shift_and_scale_of_input(lib, case, a, c):
    x, dims, w, b = case
    d = math.prod(dims)
    assume(d >= 2 and np.min(np.var(x.reshape(-1, d), axis=1)) > 1e-2)
    # eps deliberately breaks exact invariance (it matters as var -> 0): test the math with a
    # negligible eps
    with use_impl("reference"):
        y1 = F.layer_norm(put(lib, x), dims, put(lib, w), put(lib, b), eps=1e-12)
        y2 = F.layer_norm(put(lib, a * x + c), dims, put(lib, w), put(lib, b), eps=1e-12)
    np.testing.assert_allclose(host(y2), host(y1), rtol=1e-8, atol=1e-8)


@libs
@given(case=ln_case(dtype=st.just(np.float64), magnitudes=(1e-3, 1.0, 1e3)))
def test_rows_have_mean_0_std_1_along_exactly_the_normalized_dims(lib, case):
    x, dims, _, _ = case
    d = math.prod(dims)
    rows = x.reshape(-1, d)
    assume(d >= 2 and np.min(np.var(rows, axis=1)) > 1e-2)
    with use_impl("reference"):
        y = host(F.layer_norm(put(lib, x), dims))
    axes = tuple(range(x.ndim - len(dims), x.ndim))
    np.testing.assert_allclose(np.mean(y, axis=axes), 0.0, atol=1e-9)
    var = np.var(rows, axis=1).reshape(np.mean(y, axis=axes).shape)
    # biased std of xhat is sqrt(var / (var + eps)), 1 up to the eps shift
    np.testing.assert_allclose(np.std(y, axis=axes), np.sqrt(var / (var + 1e-5)), rtol=1e-9)


@libs
@given(case=ln_case(dtype=st.just(np.float64), magnitudes=(1.0,), kinds=WELL_CONDITIONED),
       seed=st.integers(0, 99))
def test_gradients_match_finite_differences(lib, case, seed):
    x, dims, w, b = case
    with use_impl("reference"):
        check_gradients(lambda x, w, b: F.layer_norm_forward(x, dims, w, b),
                        F.layer_norm_backward, [put(lib, a) for a in (x, w, b)], seed=seed)


@libs
@given(case=ln_case(dtype=st.just(np.float64), magnitudes=(1.0, 1e3)), seed=st.integers(0, 99))
def test_dx_sums_to_zero_over_the_normalized_dims(lib, case, seed):
    x, dims, w, b = case
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    with use_impl("reference"):
        _, cache = F.layer_norm_forward(put(lib, x), dims, put(lib, w), put(lib, b))
        dx = host(F.layer_norm_backward(put(lib, dy), cache)[0])
    d = math.prod(dims)
    sums = dx.reshape(-1, d).sum(axis=1)
    # dx is a difference of O(rstd·|dy|·|w|) terms, and xhat carries the conditioning
    # |x|·rstd of x - mean: that is the scale its rounding follows
    rows = x.reshape(-1, d)
    rstd = 1 / np.sqrt(np.var(rows, axis=1) + 1e-5)
    wmax = 1.0 if w is None else np.max(np.abs(w))
    cond = 1 + np.max(np.abs(rows), axis=1) * rstd
    scale = rstd * wmax * cond * np.abs(dy).reshape(-1, d).sum(axis=1)
    assert np.all(np.abs(sums) <= 64 * d * eps(np.float64) * scale)


def test_backward_returns_none_for_absent_parameters():
    x = np.random.default_rng(0).standard_normal((3, 4))
    _, cache = F.layer_norm_forward(x, 4)
    dx, dw, db = F.layer_norm_backward(np.ones_like(x), cache)
    assert dx.shape == x.shape and dw is None and db is None


@libs
def test_float32_rows_near_1e18_with_spread_1e16_stay_accurate(lib):
    # E[x²] - E[x]² would cancel completely here: x² ~ 1e36 while the variance is ~1e32.
    rng = np.random.default_rng(1)
    x = (1e18 + 1e16 * rng.standard_normal((4, 256))).astype(np.float32)
    with use_impl("reference"):
        y = host(F.layer_norm(put(lib, x), 256))
    exact = rm.layer_norm(x, 1)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, exact, atol=1e-3)


@libs
@given(value=st.sampled_from([0.0, 3.7, -1e-30, 1e18, -3e38]), width=st.integers(1, 300),
       dtype=dtypes())
def test_constant_rows_normalise_to_exactly_zero(lib, value, width, dtype):
    x = np.full((3, width), value, dtype=dtype)
    b = np.linspace(-1, 1, width).astype(dtype)
    with use_impl("reference"):
        y = host(F.layer_norm(put(lib, x), width, put(lib, np.ones(width, dtype)), put(lib, b)))
    np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))


@libs
def test_tiny_magnitudes_are_finite_and_shrunk_by_eps(lib):
    x = np.array([[1e-30, -1e-30, 2e-30, 0.0]])
    with use_impl("reference"):
        y = host(F.layer_norm(put(lib, x), 4))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 1e-20
    np.testing.assert_allclose(y, rm.layer_norm(x, 1), rtol=1e-12)


@libs
def test_float32_spread_beyond_sqrt_of_max_float_does_not_overflow(lib):
    # deviations of 1e20 square to 1e40, past float32's 3.4e38
    x = np.array([[1e20, -1e20, 3e20, 0.0]], dtype=np.float32)
    with use_impl("reference"):
        y = host(F.layer_norm(put(lib, x), 4))
    np.testing.assert_allclose(y, rm.layer_norm(x, 1), rtol=1e-5)
