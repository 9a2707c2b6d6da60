"""The flash-style CUDA attention (kernels/cuda/attention.py) against the reference, on
numba-cuda's CUDA simulator without a GPU and on CuPy arrays with one (tests/cuda_device.py).

Under the simulator a block has ROWS = 4 threads and a shared tile TILE_ROWS = 3 rows, so
sequences of 5..12 reach several query blocks and key tiles, lengths that are not a multiple of
either, causal tiles skipped above the diagonal, T > S and T < S. The cache keeps the row
log-sum-exp, so the backward budget scales with the largest score (the flash trade-off, as
for the Numba kernel: nanonorm.specs.attention.inputs).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanonorm.ops.attention import AttentionCache, AttentionLseCache
from nanonorm.ops.registry import KERNELS as R
from nanonorm.specs.attention import backward_scale
from nanonorm.testing import (WIDER, assert_close_budget, check_gradients,
                              check_kernel_pairings)
from nanonorm.testing.strategies import dtypes, float_arrays

from cuda_device import SIMULATOR, needs_gpu, on_device  # noqa: E402  (skips without either)

from nanonorm.kernels.cuda import attention as A  # noqa: E402  (after the simulator check)
from nanonorm.kernels.cuda.attention_tiles import DMAX, ROWS, tile_rows  # noqa: E402

FWD, BWD = "scaled_dot_product_attention_forward", "scaled_dot_product_attention_backward"
# NumPy in and out: on the simulator as they are, on a GPU through CuPy arrays
forward, backward = ((A.scaled_dot_product_attention_forward,
                      A.scaled_dot_product_attention_backward) if SIMULATOR else
                     (on_device(A.scaled_dot_product_attention_forward),
                      on_device(A.scaled_dot_product_attention_backward)))
KERNELS = {FWD: forward, BWD: backward}


def check_attention(q, k, v, dy, dtype, causal=False, scale=None):
    """Forward and the three pairings with the reference, under the lse-cache budget."""
    sc = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    max_score = abs(sc) * np.max(np.abs(q), initial=0) * np.max(np.abs(k), initial=0) \
        * q.shape[-1]
    return check_kernel_pairings(KERNELS, FWD, BWD, (q, k, v), dy, dtype,
                                 fwd_kw=dict(causal=causal, scale=scale), name="attention",
                                 grad_scale=backward_scale(q, k, v, dy, sc),
                                 bwd_cond=1.0 + max_score)


def normal(seed, lead, t, s, d, dv):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((*lead, n, c)) for n, c in ((t, d), (s, d), (s, dv), (t, dv)))


@st.composite
def attention_case(draw):
    lead = draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    t, s = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    arrays = (draw(float_arrays((*lead, n, c), np.float64, magnitudes=(1.0, 3.0),
                                kinds=("normal", "uniform", "outliers")))
              for n, c in ((t, d), (s, d), (s, dv), (t, dv)))
    return (*arrays, draw(st.booleans()), draw(st.sampled_from([None, 0.3, -0.5, 0.0])))


@settings(max_examples=6)
@given(case=attention_case(), dtype=dtypes())
def test_agrees_with_the_reference(case, dtype):
    q, k, v, dy, causal, scale = case
    check_attention(q, k, v, dy, dtype, causal, scale)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t,s", [(9, 7), (5, 11), (12, 12)])
def test_many_tiles(causal, t, s):
    # several query blocks and key tiles, lengths that are not a multiple of them (12: both
    # are); T > S (causal: the first T - S queries see no key) and T < S
    lead, d, dv = (2,), 4, 3
    assert t > ROWS and s > 2 * tile_rows(d, dv)
    q, k, v, dy = normal(t * 100 + s, lead, t, s, d, dv)
    y, (dq, dk, dv_) = check_attention(q, k, v, dy, np.float32, causal)
    _, cache = forward(*(a.astype(np.float32) for a in (q, k, v)),
                                                      causal=causal)
    assert isinstance(cache, AttentionLseCache) and cache.causal == causal
    assert cache.lse.shape == (*lead, t, 1) and cache.o.shape == (*lead, t, dv)
    if causal and t > s:
        assert np.all(y[:, :t - s] == 0) and np.all(dq[:, :t - s] == 0)
        assert np.all(cache.lse[:, :t - s] == -np.inf)
    # deterministic: no atomics, the same sums in the same order
    g1 = backward(dy.astype(np.float32), cache)
    for a, b in zip(g1, (dq, dk, dv_)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("t,s", [(2, 120), (120, 2)])
def test_long_rows(t, s):
    # 40 key (query) tiles: the online softmax's rescaling and the two-level float32 sums
    # over them (forward, dQ: key tiles; dK/dV: query tiles)
    rng = np.random.default_rng(t)
    q, k, v, dy = (rng.standard_normal((1, n, c)) * 3
                   for n, c in ((t, 2), (s, 2), (s, 2), (t, 2)))
    check_attention(q, k, v, dy, np.float32)


def test_cache_holds_no_scores():
    # every array the cache keeps is O(T·d) per head, never (T, S)
    t = s = 12
    q, k, v, dy = normal(0, (2,), t, s, 2, 3)
    _, cache = forward(q, k, v, causal=True)
    arrays = [a for a in cache if isinstance(a, np.ndarray)]
    assert len(arrays) == 5                                   # q, k, v, lse, o
    for a in arrays:
        assert a.size <= 2 * max(t, s) * 3 < 2 * t * s, a.shape


def _lse(q, k, causal, scale, dtype):
    """The row log-sum-exp of the scaled, masked scores in `dtype`; -inf for a row without keys."""
    q, k = q.astype(dtype), k.astype(dtype)
    s = (q @ np.swapaxes(k, -1, -2)) * dtype(scale)
    if causal:
        t, n = s.shape[-2:]
        s = np.where(np.arange(n)[None, :] <= np.arange(t)[:, None] + n - t, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True, initial=-np.inf)
    m0 = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        return m0 + np.log(np.sum(np.exp(s - m0), axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal,t,s,scale", [(True, 9, 5, 0.5), (False, 6, 10, -0.7),
                                              (True, 4, 10, 0.0)])
def test_lse_is_the_rows_log_sum_exp(dtype, causal, t, s, scale):
    q, k, v, _ = normal(t + s, (2,), t, s, 3, 2)
    _, cache = forward(q.astype(dtype), k.astype(dtype),
                                                      v.astype(dtype), causal=causal,
                                                      scale=scale)
    assert cache.lse.dtype == dtype
    assert_close_budget(cache.lse, _lse(q, k, causal, scale, dtype),
                        _lse(q, k, causal, scale, WIDER[np.dtype(dtype)]), name="lse")


@pytest.mark.parametrize("t,s", [(10, 10), (6, 10)])
def test_causal_outputs_ignore_later_keys(t, s):
    # query i sees keys j <= i + S - T: changing the keys and values after that leaves
    # outputs <= i unchanged, bit for bit (tile boundaries included)
    q, k, v, _ = normal(t * s, (2,), t, s, 3, 2)
    f = forward
    y = f(q, k, v, causal=True)[0]
    for i in (0, 2, 3, t - 2):
        k2, v2 = k.copy(), v.copy()
        k2[:, i + s - t + 1:] = 50.0
        v2[:, i + s - t + 1:] = -7.0
        y2 = f(q, k2, v2, causal=True)[0]
        np.testing.assert_array_equal(y2[:, :i + 1], y[:, :i + 1])
        assert not np.array_equal(y2[:, i + 1:], y[:, i + 1:])


@pytest.mark.parametrize("shape", [
    dict(lead=(2,), t=3, s=0, d=2, dv=2),     # no keys: zeros, lse -inf, dq 0
    dict(lead=(2,), t=0, s=4, d=2, dv=2),     # no queries
    dict(lead=(2,), t=3, s=4, d=2, dv=0),     # no value features
    dict(lead=(0,), t=3, s=4, d=2, dv=2),     # an empty batch
    dict(lead=(2, 0), t=3, s=4, d=2, dv=2),
])
@pytest.mark.parametrize("causal", [True, False])
def test_empty_sizes(shape, causal):
    lead, t, s = shape["lead"], shape["t"], shape["s"]
    q, k, v, dy = (a.astype(np.float32)
                   for a in normal(1, lead, t, s, shape["d"], shape["dv"]))
    y, cache = forward(q, k, v, causal=causal)
    y_ref, ref_cache = R[FWD](q, k, v, causal=causal)
    assert y.dtype == np.float32 and y.shape == y_ref.shape
    np.testing.assert_array_equal(y, y_ref)
    assert cache.lse.shape == (*lead, t, 1)
    if s == 0:
        assert np.all(y == 0) and np.all(cache.lse == -np.inf)
    for c in (cache, ref_cache):                 # kernel backward on both caches
        grads = backward(dy, c)
        for g, r in zip(grads, R[BWD](dy, ref_cache)):
            assert g.dtype == np.float32 and g.shape == r.shape
            np.testing.assert_array_equal(g, r)


def test_scale_zero_averages_the_visible_values():
    q, k, v, dy = normal(3, (1,), 7, 5, 2, 3)
    y, _ = check_attention(q, k, v, dy, np.float64, causal=True, scale=0.0)
    assert np.all(y[0, :2] == 0)                 # query i sees keys 0 .. i - 2
    means = [np.stack([w[0, :i - 1].mean(axis=0) for i in range(2, 7)])
             for w in (v, v.astype(np.longdouble))]
    assert_close_budget(y[0, 2:], *means, name="mean of the visible values")


def test_gradients_by_finite_differences():
    q, k, v, _ = normal(4, (2,), 7, 5, 3, 2)
    check_gradients(lambda a, b, c: forward(a, b, c, causal=True),
                    backward, (q, k, v))


def test_backward_without_the_output_recomputes_it():
    # a cache without O (the Numba kernel's layout): the forward kernel recomputes it
    q, k, v, dy = normal(5, (2,), 6, 8, 3, 2)
    _, cache = forward(q, k, v, causal=True)
    with_o = backward(dy, cache)
    without = backward(dy, cache._replace(o=None))
    for a, b in zip(with_o, without):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairs_with_the_numba_kernel(dtype):
    # the CPU kernel's cache (no O) into this backward, and this cache into the CPU backward
    from nanonorm.kernels.cpu import attention as C
    q, k, v, dy = normal(6, (2,), 7, 9, 3, 2)
    sc = 1 / np.sqrt(3)
    cond = 1.0 + sc * np.max(np.abs(q)) * np.max(np.abs(k)) * 3
    a, a_wide = ([x.astype(dt) for x in (q, k, v, dy)] for dt in (dtype, WIDER[np.dtype(dtype)]))
    ref = R[BWD](a[3], R[FWD](*a[:3], causal=True)[1])
    exact = R[BWD](a_wide[3], R[FWD](*a_wide[:3], causal=True)[1])
    for fwd, bwd in ((C, A), (A, C)):
        grads = bwd.scaled_dot_product_attention_backward(
            a[3], fwd.scaled_dot_product_attention_forward(*a[:3], causal=True)[1])
        for i, (g, r, e) in enumerate(zip(grads, ref, exact)):
            assert g.dtype == dtype
            assert_close_budget(g, r, e, factor=4 * cond, ulps=8 * cond,
                                scale=backward_scale(q, k, v, dy, sc), name=f"grad {i}")


@pytest.mark.skipif(not SIMULATOR, reason="bit for bit against the NumPy reference: on a GPU "
                    "the fallback is the reference on CuPy arrays (cuBLAS rounds otherwise)")
def test_wide_heads_fall_back_to_the_reference():
    # d or dv beyond the kernels' row buffers: the reference, never a truncated row
    for d, dv in ((DMAX + 1, 2), (2, DMAX + 1)):
        q, k, v, dy = normal(7, (1,), 3, 2, d, dv)
        y, cache = forward(q, k, v, causal=True)
        y_ref, ref_cache = R[FWD](q, k, v, causal=True)
        assert isinstance(cache, AttentionCache)
        np.testing.assert_array_equal(y, y_ref)
        for g, r in zip(backward(dy, cache),
                        R[BWD](dy, ref_cache)):
            np.testing.assert_array_equal(g, r)
    # DMAX itself still runs the kernels
    q, k, v, dy = normal(8, (), 3, 2, DMAX, DMAX)
    check_attention(q, k, v, dy, np.float32, causal=True)
    assert isinstance(forward(q, k, v)[1], AttentionLseCache)


@needs_gpu
@pytest.mark.parametrize("causal", [True, False])
def test_gpu_full_size_heads(causal):
    # GPT-2's head size at T = 1100: 9 query blocks of 128, 35 key tiles of 32, neither a
    # multiple; every output and pairing under the lse-cache budget
    q, k, v, dy = normal(11, (1, 3), 1100, 1100, 64, 64)
    check_attention(q, k, v, dy, np.float32, causal=causal)
