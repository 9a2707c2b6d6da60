"""The fixed-order row sums of the Numba kernels (kernels/cpu/lanes.py): each result is the one
its documented order gives, bit for bit, so no compiler or SIMD width can change it."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numba import njit

from nanonorm.kernels.cpu.lanes import (NACC, WIDTH, lane_dot, lane_max, lane_moments, lane_sum,
                                        lane_sum_dot)


@njit(cache=False)
def _all(a, b, shift, lo, hi):
    s, sd = lane_sum_dot(a, b, lo, hi)
    d1, d2 = lane_moments(a, shift, lo, hi)
    return lane_sum(a, lo, hi), lane_dot(a, b, lo, hi), s, sd, d1, d2


def in_documented_order(terms: np.ndarray) -> float:
    """Σ terms (float64) as lanes.py orders it: term j to lane j mod 32 of four 8-wide
    accumulators, (a0 + a1) + (a2 + a3), the 8 lanes pairwise, then the tail one by one."""
    step = WIDTH * NACC
    nsteps = len(terms) // step
    acc = np.zeros((NACC, WIDTH))
    for s in range(nsteps):
        acc = acc + terms[s * step:(s + 1) * step].reshape(NACC, WIDTH)   # elementwise IEEE
    parts = list(acc)
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] for i in range(0, len(parts), 2)]
    lanes = list(parts[0])
    while len(lanes) > 1:
        lanes = [lanes[i] + lanes[i + 1] for i in range(0, len(lanes), 2)]
    total = lanes[0]
    for t in terms[nsteps * step:]:
        total += t
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), n=st.sampled_from([0, 1, 7, 31, 32, 33, 64, 95, 257, 1000]))
def test_each_sum_is_the_documented_order_bit_for_bit(dtype, data, n):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scale = data.draw(st.sampled_from([1e-30, 1.0, 1e6, 1e30]))
    size = n + data.draw(st.integers(0, 40))
    lo = data.draw(st.integers(0, size - n))
    a = (rng.standard_normal(size) * scale + data.draw(st.sampled_from([0.0, 3.0]))
         ).astype(dtype)
    b = rng.standard_normal(size).astype(dtype)
    shift = dtype(a[lo] if n else 0.0)
    got = _all(a, b, shift, lo, lo + n)
    a64, b64 = a[lo:lo + n].astype(np.float64), b[lo:lo + n].astype(np.float64)
    d = (a[lo:lo + n] - shift).astype(np.float64)                 # the shift in a's dtype
    want = [in_documented_order(t) for t in (a64, a64 * b64, a64, a64 * b64, d, d * d)]
    np.testing.assert_array_equal(np.array(got), np.array(want))
    assert math.isclose(got[0], math.fsum(a64), rel_tol=1e-12, abs_tol=1e-300 + 1e-12 *
                        math.fsum(abs(a64)))


def test_nan_and_inf_reach_the_sum():
    a = np.ones(100, np.float32)
    a[77] = np.nan
    assert math.isnan(_all(a, a, np.float32(0), 0, 100)[0])
    a[77] = np.inf
    assert _all(a, a, np.float32(0), 0, 100)[0] == math.inf
    assert _all(a, a, np.float32(0), 0, 77)[0] == 77.0             # bounds respected


def test_only_contiguous_float_rows_are_accepted():
    with pytest.raises(Exception, match="1-D C-contiguous float32/float64"):
        _all(np.arange(4), np.arange(4), 0, 0, 4)


@njit(cache=False)
def _max(a, n, start):
    return lane_max(a, n, start)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(values=st.lists(st.floats(allow_nan=False, width=32), max_size=200),
       n_cut=st.integers(0, 200), start=st.sampled_from([-np.inf, 0.0, 1e30]))
def test_lane_max_is_the_max_of_start_and_the_first_n(dtype, values, n_cut, start):
    a = np.asarray(values, dtype)
    n = min(n_cut, a.size)
    assert _max(a, n, dtype(start)) == max([dtype(start)] + list(a[:n]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_max_skips_nan_and_keeps_minus_inf_rows(dtype):
    a = np.full(100, -np.inf, dtype)
    assert _max(a, 100, dtype(-np.inf)) == -np.inf
    a[[3, 70, 99]] = np.nan                  # in a vector step and in the tail
    a[50] = 2.0
    assert _max(a, 100, dtype(-np.inf)) == 2.0
