"""softmax / log_softmax reference: exact math, invariants, temperature limits, masks, grads."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.testing import check_gradients
from nanonorm.testing.strategies import WELL_CONDITIONED, dtypes, float_arrays, shapes

import reference_math as rm
from backends import eps, host, libs, put

OPS = {"softmax": (F.softmax_forward, F.softmax_backward, rm.softmax),
       "log_softmax": (F.log_softmax_forward, F.log_softmax_backward, rm.log_softmax)}
ops = pytest.mark.parametrize("op", sorted(OPS))


@st.composite
def softmax_case(draw, dtype=dtypes(), magnitudes=(1e-3, 1.0, 1e3), kinds=None, masks=True):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=7))
    x = draw(float_arrays(shape, dtype, magnitudes=magnitudes,
                          **({} if kinds is None else {"kinds": kinds})))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if masks and draw(st.booleans()):  # -inf entries, sometimes whole rows
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        x = np.where(rng.random(shape) < 0.3, -np.inf, x).astype(x.dtype)
    return x, axis, draw(st.sampled_from([0.25, 1.0, 3.0]))


@libs
@ops
@given(case=softmax_case())
def test_agrees_with_exact_math(lib, op, case):
    x, axis, temperature = case
    forward, _, exact_fn = OPS[op]
    with use_impl("reference"):
        y = host(forward(put(lib, x), axis, temperature)[0])
    exact = exact_fn(x, axis, temperature)
    assert y.dtype == x.dtype
    finite = np.isfinite(x)
    # the rounding of x / T itself (relative eps) moves both outputs by eps·|x|/T
    scale = 1.0 + np.max(np.abs(np.where(finite, x, 0)), initial=0) / temperature
    np.testing.assert_allclose(y, exact, rtol=0, atol=32 * eps(x.dtype) * scale)


@libs
@given(case=softmax_case(dtype=st.just(np.float64)))
def test_rows_sum_to_one(lib, case):
    x, axis, temperature = case
    with use_impl("reference"):
        p = host(F.softmax(put(lib, x), axis, temperature))
    sums = p.sum(axis=axis)
    live = np.any(np.isfinite(x), axis=axis)  # rows with at least one unmasked entry
    np.testing.assert_allclose(sums[live], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(sums[~live], 0.0)


@libs
@ops
@given(case=softmax_case(dtype=st.just(np.float64), magnitudes=(1.0,)),
       shift=st.floats(-1e3, 1e3))
def test_invariant_to_shifting_a_row(lib, op, case, shift):
    x, axis, temperature = case
    forward = OPS[op][0]
    with use_impl("reference"):
        y1 = host(forward(put(lib, x), axis, temperature)[0])
        y2 = host(forward(put(lib, x + shift), axis, temperature)[0])
    np.testing.assert_allclose(y2, y1, rtol=1e-9, atol=1e-9 * (1 + abs(shift)))


@libs
@given(x=float_arrays((5, 8), np.float64, kinds=("normal",)))
def test_temperature_to_zero_gives_the_argmax_and_to_infinity_gives_uniform(lib, x):
    top2 = np.sort(x, axis=-1)[:, -2:]
    assume(np.min(top2[:, 1] - top2[:, 0]) > 1e-6 * np.max(np.abs(x)))
    with use_impl("reference"):
        cold = host(F.softmax(put(lib, x), -1, 1e-12 * np.max(np.abs(x))))
        hot = host(F.softmax(put(lib, x), -1, 1e12 * np.max(np.abs(x))))
    np.testing.assert_array_equal(cold, np.eye(8)[np.argmax(x, axis=-1)])
    np.testing.assert_allclose(hot, 1 / 8, rtol=1e-9)


@libs
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_of_1e4_are_exact_to_rounding(lib, dtype):
    x = np.array([[1e4, 1e4 - 1.0, 1e4 - 2.5, -1e4], [1e4, -np.inf, 1e4, 0.0]], dtype=dtype)
    with use_impl("reference"):
        p = host(F.softmax(put(lib, x)))
        lp = host(F.log_softmax(put(lib, x)))
    np.testing.assert_allclose(p, rm.softmax(x), rtol=4 * eps(dtype), atol=1e-300)
    np.testing.assert_allclose(lp, rm.log_softmax(x), rtol=4 * eps(dtype), atol=8 * eps(dtype))


@libs
def test_a_fully_masked_row_gives_zeros_and_a_zero_gradient(lib):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf]])
    with use_impl("reference"):
        p, cache = F.softmax_forward(put(lib, x))
        dx = host(F.softmax_backward(put(lib, np.ones_like(x)), cache))
        lp = host(F.log_softmax(put(lib, x)))
    np.testing.assert_array_equal(host(p)[0], 0.0)
    np.testing.assert_array_equal(dx[0], 0.0)
    assert np.all(lp[0] == -np.inf) and not np.any(np.isnan(lp))


@libs
@ops
@given(case=softmax_case(dtype=st.just(np.float64), magnitudes=(1.0,), kinds=WELL_CONDITIONED,
                         masks=False), seed=st.integers(0, 99))
def test_gradients_match_finite_differences(lib, op, case, seed):
    x, axis, temperature = case
    forward, backward, _ = OPS[op]
    with use_impl("reference"):
        check_gradients(lambda x: forward(x, axis, temperature), backward, [put(lib, x)],
                        seed=seed)
