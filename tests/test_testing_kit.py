"""The public test kit must catch what it promises to catch."""
import numpy as np
import pytest
from hypothesis import given

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.testing import assert_close_budget, check_gradients
from nanonorm.testing.strategies import float_arrays, shapes

rng = np.random.default_rng(0)


def test_check_gradients_accepts_a_right_backward_and_rejects_a_wrong_one():
    x = rng.standard_normal((4, 5))
    with use_impl("reference"):
        pairs = check_gradients(F.gelu_forward, F.gelu_backward, [x])
        assert len(pairs) == 1
        with pytest.raises(AssertionError, match="input 0"):
            check_gradients(F.gelu_forward, lambda dy, c: 1.001 * F.gelu_backward(dy, c), [x])
        with pytest.raises(AssertionError, match="None"):
            check_gradients(F.linear_forward, lambda dy, c: (None, None, None),
                            [x, rng.standard_normal((5, 2)), None])


def test_check_gradients_rejects_a_backward_that_returns_its_input():
    x = rng.standard_normal((3, 3))
    with pytest.raises(AssertionError, match="shares memory"):
        check_gradients(lambda x: (x * 1.0, x), lambda dy, x: x, [x], rtol=np.inf)


def test_budget_passes_the_reference_and_catches_a_sloppier_kernel():
    x = rng.standard_normal((64, 33)) * 10
    exact = F.softmax(x)
    approx = F.softmax(x.astype(np.float32))
    assert_close_budget(approx, approx, exact)
    sloppy = (approx.astype(np.float64) * (1 + 1e-4)).astype(np.float32)
    with pytest.raises(AssertionError, match="budget"):
        assert_close_budget(sloppy, approx, exact)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close_budget(np.where(approx > 0.5, np.nan, approx), approx, exact)


@given(x=float_arrays(shapes(min_dims=2, max_dims=3), np.float32, kinds=("constant_rows",)))
def test_constant_rows_strategy_draws_constant_rows_of_the_dtype(x):
    assert x.dtype == np.float32 and x.ndim >= 2
    np.testing.assert_array_equal(x, np.broadcast_to(x[..., :1], x.shape))


def test_check_kernel_pairings_passes_the_reference_and_catches_a_wrong_backward():
    from nanonorm.ops.registry import KERNELS as reference
    from nanonorm.testing import check_kernel_pairings
    x = np.random.default_rng(0).standard_normal((5, 7))
    dy = np.ones_like(x)
    out, (dx,) = check_kernel_pairings(reference, "gelu_forward", "gelu_backward", (x,), dy,
                                       np.float32, name="gelu")
    assert out.dtype == dx.dtype == np.float32
    wrong = dict(reference, gelu_backward=lambda d, c: reference["gelu_backward"](d, c) * 1.01)
    with pytest.raises(AssertionError, match="gelu grad 0"):
        check_kernel_pairings(wrong, "gelu_forward", "gelu_backward", (x,), dy, np.float32,
                              name="gelu")


def test_budget_lets_a_subnormal_flush_to_zero_and_nothing_more():
    # An exact float32 result of 3.6e-41 (subnormal): a kernel returning 0 is within a floor
    # of float32's smallest normal; the reference, exact there, sets no budget to lean on.
    tiny = float(np.finfo(np.float32).tiny)
    exact = np.array([3.6e-41, -1.2e-40, 0.0])
    ref = exact.astype(np.float32)
    assert_close_budget(np.zeros(3, np.float32), ref, exact)
    assert_close_budget(ref, ref, exact)
    with pytest.raises(AssertionError, match="budget"):            # off by more than tiny
        assert_close_budget(np.array([3 * tiny, 0, 0], np.float32), ref, exact)
    # a normal result is not loosened: losing a value of 1e-37 entirely is an error
    normal = np.array([1e-37, 2e-37])
    with pytest.raises(AssertionError, match="budget"):
        assert_close_budget(np.zeros(2, np.float32), normal.astype(np.float32), normal)
