"""Scaled dot-product attention reference: loops, causality, variance of QKᵀ, gradients."""
import math

import numpy as np
from hypothesis import given, strategies as st

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.testing import check_gradients
from nanonorm.testing.strategies import WELL_CONDITIONED, dtypes, float_arrays

import reference_math as rm
from backends import eps, host, libs, put


@st.composite
def attention_case(draw, dtype=dtypes(), kinds=("normal", "uniform", "outliers")):
    dtype = draw(dtype)
    lead = draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    t, s = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    q, k, v = (draw(float_arrays((*lead, n, m), dtype, magnitudes=(1.0,), kinds=kinds))
               for n, m in ((t, d), (s, d), (s, dv)))
    causal = draw(st.booleans())
    scale = draw(st.sampled_from([None, 0.3, 2.0]))
    return q, k, v, causal, scale


@libs
@given(case=attention_case())
def test_agrees_with_exact_math(lib, case):
    q, k, v, causal, scale = case
    with use_impl("reference"):
        y = host(F.scaled_dot_product_attention(*put(lib, q, k, v), causal=causal, scale=scale))
    exact = rm.attention(q, k, v, causal, scale)
    assert y.dtype == q.dtype and y.shape == exact.shape
    sc = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    # scores carry a rounding of |q||k|·scale; the output is a convex mix of |v|
    cond = 1 + sc * np.max(np.abs(q)) * np.max(np.abs(k)) * q.shape[-1]
    tol = 32 * eps(q.dtype) * cond * np.max(np.abs(v))
    np.testing.assert_allclose(y, exact, rtol=0, atol=tol)


@libs
@given(case=attention_case(dtype=st.just(np.float64)), seed=st.integers(0, 2**32 - 1))
def test_causal_outputs_ignore_the_future(lib, case, seed):
    q, k, v, _, scale = case
    t, s = q.shape[-2], k.shape[-2]
    rng = np.random.default_rng(seed)
    k2, v2 = k.copy(), v.copy()
    cut = rng.integers(0, s)  # change every key/value at positions >= cut
    k2[..., cut:, :] = rng.standard_normal(k2[..., cut:, :].shape)
    v2[..., cut:, :] = rng.standard_normal(v2[..., cut:, :].shape)
    with use_impl("reference"):
        y1 = host(F.scaled_dot_product_attention(*put(lib, q, k, v), causal=True, scale=scale))
        y2 = host(F.scaled_dot_product_attention(*put(lib, q, k2, v2), causal=True, scale=scale))
    unseen = np.arange(t) + s - t < cut  # queries whose last visible key is before cut
    np.testing.assert_array_equal(y1[..., unseen, :], y2[..., unseen, :])


@libs
def test_queries_that_see_no_key_output_zeros(lib):
    q = np.ones((5, 3))
    k = v = np.ones((2, 3))
    with use_impl("reference"):
        y = host(F.scaled_dot_product_attention(*put(lib, q, k, v), causal=True))
    np.testing.assert_array_equal(y[:3], 0.0)   # query i sees keys j <= i - 3
    np.testing.assert_allclose(y[3:], 1.0)


@libs
def test_unit_variance_inputs_give_scores_of_variance_d(lib):
    rng = np.random.default_rng(0)
    for d in (16, 64, 256):
        q, k = rng.standard_normal((2, 512, d))
        scores = host(put(lib, q) @ put(lib, k).mT) if lib == "numpy" else host(
            put(lib, q) @ __import__("array_api_strict").matrix_transpose(put(lib, k)))
        assert abs(np.var(scores) / d - 1) < 0.1
        # and 1/sqrt(d) brings them back to unit variance: what the default scale is for
        np.testing.assert_allclose(np.var(scores / math.sqrt(d)), 1.0, rtol=0.1)


@libs
@given(case=attention_case(dtype=st.just(np.float64), kinds=WELL_CONDITIONED),
       seed=st.integers(0, 99))
def test_gradients_match_finite_differences(lib, case, seed):
    q, k, v, causal, scale = case
    with use_impl("reference"):
        check_gradients(lambda q, k, v: F.scaled_dot_product_attention_forward(
            q, k, v, causal=causal, scale=scale), F.scaled_dot_product_attention_backward,
            put(lib, q, k, v), seed=seed)
