"""GELU, linear, embedding and cross-entropy references: exact math, edge values, gradients."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.testing import check_gradients
from nanonorm.testing.strategies import WELL_CONDITIONED, dtypes, float_arrays, shapes

import reference_math as rm
from backends import eps, host, libs, put


# GELU --------------------------------------------------------------------------------------

@libs
@given(x=float_arrays(shapes(max_dims=3), dtypes(), magnitudes=(1e-3, 1.0, 30.0)))
def test_gelu_agrees_with_exact_math(lib, x):
    with use_impl("reference"):
        y, cache = F.gelu_forward(put(lib, x))
        dx = host(F.gelu_backward(put(lib, np.ones_like(x)), cache))
    y = host(y)
    assert y.dtype == x.dtype
    np.testing.assert_allclose(y, rm.gelu(x), rtol=16 * eps(x.dtype), atol=16 * eps(x.dtype))
    np.testing.assert_allclose(dx, rm.gelu_grad(x), rtol=64 * eps(x.dtype),
                               atol=64 * eps(x.dtype))


@libs
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_is_finite_and_exact_at_huge_magnitudes(lib, dtype):
    big = np.finfo(dtype).max / 2
    x = np.array([-big, -1e20, -1e6, 1e6, 1e20, big], dtype=dtype)
    with use_impl("reference"):
        y, cache = F.gelu_forward(put(lib, x))
        dx = host(F.gelu_backward(put(lib, np.ones_like(x)), cache))
    np.testing.assert_array_equal(host(y), np.where(x > 0, x, 0))
    np.testing.assert_array_equal(dx, np.where(x > 0, 1, 0))


@libs
@given(x=float_arrays(shapes(max_dims=3), np.float64, magnitudes=(1.0, 3.0),
                      kinds=WELL_CONDITIONED), seed=st.integers(0, 99))
def test_gelu_gradient_matches_finite_differences(lib, x, seed):
    # In the tail (x ~ -4.5) the reference's 1 + tanh(u) cancels: the loss carries ~1e-16
    # absolute noise, which h = 1e-6 turns into ~1e-10 of finite-difference noise, the size of
    # the tolerance there (seen failing once at x = -4.4787). h = 1e-4: ~5e-13 from the noise
    # and truncation together, measured on that input.
    with use_impl("reference"):
        check_gradients(F.gelu_forward, F.gelu_backward, [put(lib, x)], seed=seed, h=1e-4)


# linear ------------------------------------------------------------------------------------

@st.composite
def linear_case(draw, dtype=dtypes()):
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=5))
    n_in, n_out = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    x = draw(float_arrays((*lead, n_in), dtype, magnitudes=(1.0,), kinds=WELL_CONDITIONED))
    w = draw(float_arrays((n_in, n_out), x.dtype, magnitudes=(1.0,), kinds=("normal",)))
    b = draw(float_arrays((n_out,), x.dtype, kinds=("normal",))) if draw(st.booleans()) else None
    return x, w, b


@libs
@given(case=linear_case())
def test_linear_agrees_with_exact_math(lib, case):
    x, w, b = case
    with use_impl("reference"):
        y = host(F.linear(*put(lib, x, w), put(lib, b)))
    assert y.dtype == x.dtype
    scale = np.abs(x).astype(np.float64) @ np.abs(w) + (0 if b is None else np.abs(b))
    np.testing.assert_array_less(np.abs(y - rm.linear(x, w, b)),
                                 4 * x.shape[-1] * eps(x.dtype) * scale + 1e-300)


@libs
@given(case=linear_case(dtype=st.just(np.float64)), seed=st.integers(0, 99))
def test_linear_gradients_match_finite_differences(lib, case, seed):
    x, w, b = case
    with use_impl("reference"):
        check_gradients(F.linear_forward, F.linear_backward, [put(lib, a) for a in (x, w, b)],
                        seed=seed)
        _, cache = F.linear_forward(*put(lib, x, w), put(lib, b))
        grads = F.linear_backward(put(lib, np.ones((*x.shape[:-1], w.shape[1]))), cache)
    assert (grads[2] is None) == (b is None)



@given(case=linear_case(dtype=st.just(np.float64)), seed=st.integers(0, 99))
def test_linear_weight_gradient_keeps_a_transposed_weights_layout(case, seed):
    # the tied unembedding passes wteᵀ, a column-major view: its dw comes column-major too
    # (so dwᵀ is contiguous, ready for the embedding's scatter-add), with the same values
    x, w, _ = case
    dy = np.random.default_rng(seed).standard_normal((*x.shape[:-1], w.shape[1]))
    wt = np.ascontiguousarray(w.T).T                                 # same values, (in, out) view
    with use_impl("reference"):
        dx, dw, _ = F.linear_backward(dy, F.linear_forward(x, w)[1])
        dx_t, dw_t, _ = F.linear_backward(dy, F.linear_forward(x, wt)[1])
    for got, want in ((dw_t, dw), (dx_t, dx)):      # BLAS may sum in another order
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(initial=1))
    if w.shape[0] > 1 and w.shape[1] > 1:
        assert dw_t.T.flags.c_contiguous

# embedding ---------------------------------------------------------------------------------

@libs
@given(v=st.integers(1, 6), c=st.integers(1, 5), lead=shapes(min_dims=1, max_dims=2),
       seed=st.integers(0, 2**32 - 1), dtype=dtypes())
def test_embedding_looks_up_rows_and_accumulates_repeated_ids(lib, v, c, lead, seed, dtype):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v, lead)   # few rows, so ids repeat
    w = rng.standard_normal((v, c)).astype(dtype)
    dy = rng.standard_normal((*lead, c)).astype(dtype)
    with use_impl("reference"):
        y, cache = F.embedding_forward(*put(lib, idx, w))
        dw = host(F.embedding_backward(put(lib, dy), cache))
    np.testing.assert_array_equal(host(y), w[idx])
    assert dw.dtype == dtype
    np.testing.assert_allclose(dw, rm.embedding_grad(idx, dy, v), rtol=8 * eps(dtype),
                               atol=8 * eps(dtype) * idx.size)


@libs
@given(seed=st.integers(0, 99))
def test_embedding_gradient_matches_finite_differences(lib, seed):
    rng = np.random.default_rng(seed)
    idx, w = rng.integers(0, 4, (3, 5)), rng.standard_normal((4, 3))
    with use_impl("reference"):
        check_gradients(lambda w: F.embedding_forward(put(lib, idx), w),
                        F.embedding_backward, [put(lib, w)], seed=seed)


# cross-entropy -----------------------------------------------------------------------------

@st.composite
def ce_case(draw, dtype=dtypes(), magnitudes=(1e-3, 1.0, 30.0), kinds=None):
    lead = draw(shapes(min_dims=1, max_dims=2, max_side=5))
    v = draw(st.integers(1, 9))
    logits = draw(float_arrays((*lead, v), dtype, magnitudes=magnitudes,
                               **({} if kinds is None else {"kinds": kinds})))
    targets = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, v, lead)
    return logits, targets


@libs
@given(case=ce_case())
def test_cross_entropy_agrees_with_exact_math(lib, case):
    logits, targets = case
    with use_impl("reference"):
        loss, cache = F.cross_entropy_forward(*put(lib, logits, targets))
        dlogits = host(F.cross_entropy_backward(1.0, cache))
    loss = host(loss)
    assert loss.shape == () and loss.dtype == logits.dtype and dlogits.dtype == logits.dtype
    scale = 1 + np.max(np.abs(logits))
    np.testing.assert_allclose(loss, rm.cross_entropy(logits, targets), rtol=0,
                               atol=16 * eps(logits.dtype) * scale)
    np.testing.assert_allclose(dlogits, rm.cross_entropy_grad(logits, targets), rtol=0,
                               atol=16 * eps(logits.dtype) * scale / targets.size)
    # each row of the gradient sums to zero: softmax sums to one, the one-hot too
    np.testing.assert_allclose(dlogits.sum(-1), 0, atol=16 * eps(logits.dtype) * scale)


@libs
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_exact_at_logits_of_1e4(lib, dtype):
    logits = np.array([[1e4, 1e4 - 1, -1e4], [-1e4, 1e4, 0.0]], dtype=dtype)
    targets = np.array([1, 1])
    with use_impl("reference"):
        loss = float(host(F.cross_entropy(*put(lib, logits, targets))))
    assert math.isclose(loss, rm.cross_entropy(logits, targets), rel_tol=8 * eps(dtype))


@libs
@given(case=ce_case(dtype=st.just(np.float64), magnitudes=(1.0,), kinds=WELL_CONDITIONED),
       seed=st.integers(0, 99))
def test_cross_entropy_gradient_matches_finite_differences(lib, case, seed):
    logits, targets = case
    with use_impl("reference"):
        check_gradients(lambda z: F.cross_entropy_forward(z, put(lib, targets)),
                        F.cross_entropy_backward, [put(lib, logits)], seed=seed)
