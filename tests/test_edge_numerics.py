"""Numerics at the edges, attacked the same way on every implementation.

Each test runs on the reference (NumPy, and array_api_strict: the standard alone), the Numba
kernels and the CUDA kernels (on numba-cuda's simulator when there is no GPU, so shapes stay
tiny). The expected answers come from tests/reference_math.py (exact fractions where the
magnitudes need them), from invariances (LayerNorm of 2^k·x is LayerNorm of x) or from the
limits themselves (a one-hot argmax, +inf for a target the logits rule out).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nanonorm.functional as F
from nanonorm.backend import get_namespace, to_numpy
from nanonorm.kernels.cpu import KERNELS as NUMBA
from nanonorm.ops.registry import KERNELS as REFERENCE

import reference_math as rm

IMPLS = ("reference", "strict", "numba", "cuda")
impls = pytest.mark.parametrize("impl", IMPLS)
dtypes = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


def _is_forward_result(r) -> bool:
    return isinstance(r, tuple) and len(r) == 2 and hasattr(r[1], "_fields")


def _moved(kernels: dict, to, back) -> dict:
    """The table with NumPy arrays moved in (to) and results moved back (back); caches stay
    opaque, on the table's side."""
    def wrap(f):
        def call(*args, **kw):
            r = f(*(to(a) if isinstance(a, np.ndarray) else a for a in args), **kw)
            if _is_forward_result(r):
                return back(r[0]), r[1]
            if isinstance(r, tuple):
                return tuple(None if a is None else back(a) for a in r)
            return back(r)
        return call
    return {op: wrap(f) for op, f in kernels.items() if op != "adamw_step"}


def _quiet(f):
    def call(*args, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return f(*args, **kw)
    return call


def table(impl: str) -> dict:
    """The op table of one implementation, taking and returning NumPy arrays."""
    if impl == "reference":
        return REFERENCE
    if impl == "strict":
        xp = get_namespace("array_api_strict")
        return _moved(REFERENCE, xp.asarray, lambda a: np.asarray(to_numpy(a)))
    if impl == "numba":
        return NUMBA
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    from nanonorm.kernels.cuda import KERNELS as CUDA
    if cuda.config.ENABLE_CUDASIM:
        # the simulator runs kernels as NumPy scalar code, which warns on an overflow or
        # inf - inf where a GPU computes the same inf / NaN silently
        return {op: _quiet(f) for op, f in CUDA.items()}
    cupy = pytest.importorskip("cupy", reason="a GPU without CuPy: the CUDA kernels need it")
    return _moved(CUDA, cupy.asarray, cupy.asnumpy)


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def rounded(a, dtype):
    """a rounded to dtype, -inf / inf where it is beyond the dtype's range (no warning)."""
    with np.errstate(over="ignore"):
        return np.asarray(a).astype(dtype)


def assert_same_nonfinite(got, want):
    """NaN where want is NaN, the same infinities where want has them."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    np.testing.assert_array_equal(np.isinf(got), inf)
    np.testing.assert_array_equal(got[inf], want[inf])


def assert_close_where_finite(got, want, tol):
    assert_same_nonfinite(got, want)
    fin = np.isfinite(np.asarray(want, np.float64))
    np.testing.assert_allclose(np.asarray(got, np.float64)[fin],
                               np.asarray(want, np.float64)[fin], rtol=0, atol=tol)


# softmax / log_softmax ---------------------------------------------------------------------

# distinct max, a tie, a -inf mask, all negative
ARGMAX_ROWS = [[1.0, 3.0, 2.0, -1.0], [5.0, 5.0, 0.0, -np.inf], [-2.0, -7.0, -2.5, -3.0]]
ARGMAX = [[0, 1, 0, 0], [0.5, 0.5, 0, 0], [1, 0, 0, 0]]
# 1e-46 and 1e-300 round to 0 in float32 (and 1e-40 is subnormal there)
TINY_TEMPERATURES = [1e-30, 1e-40, 1e-46, 1e-300]


@impls
@dtypes
@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_softmax_with_a_tiny_temperature_gives_the_argmax(impl, dtype, temperature):
    x = np.array(ARGMAX_ROWS, dtype)
    p, cache = table(impl)["softmax_forward"](x, -1, temperature)
    assert p.dtype == dtype
    np.testing.assert_array_equal(p, np.array(ARGMAX, dtype))
    # one-hot rows have a zero gradient, and so has the tie row for equal dy on the tie
    dy = np.array([[0.3, -1.0, 2.0, 0.5], [1.5, 1.5, -2.0, 4.0], [-1.0, 0.25, 3.0, 1.0]], dtype)
    dx = table(impl)["softmax_backward"](dy, cache)
    np.testing.assert_array_equal(dx, np.zeros_like(x))


@impls
@dtypes
@pytest.mark.parametrize("temperature", TINY_TEMPERATURES)
def test_log_softmax_with_a_tiny_temperature_is_exact_or_minus_inf(impl, dtype, temperature):
    x = np.array(ARGMAX_ROWS, dtype)
    y, _ = table(impl)["log_softmax_forward"](x, -1, temperature)
    want = rounded(rm.log_softmax_any(x, temperature), dtype)     # -inf beyond the dtype
    assert y.dtype == dtype
    assert_same_nonfinite(y, want)
    fin = np.isfinite(want)
    np.testing.assert_allclose(y[fin], want[fin], rtol=4 * eps(dtype), atol=4 * eps(dtype))


@pytest.mark.parametrize("temperature", [1e-30, 1e-46])
def test_sampling_with_a_tiny_temperature_picks_the_argmax(temperature):
    from nanonorm.generate import sample
    logits = np.random.default_rng(0).standard_normal((6, 50)).astype(np.float32) * 3
    for seed in range(5):
        ids = sample(logits, temperature=temperature, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(np.asarray(ids), np.argmax(logits, axis=-1))


def _largest(dtype):
    big = float(np.finfo(dtype).max)
    return np.array([[big, -big, 0.0], [-big, big, big], [-big, -big / 2, -np.inf]], dtype)


@impls
@dtypes
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_softmax_and_log_softmax_at_the_largest_floats(impl, dtype, temperature):
    # x - max spans twice the largest float: for T = 3 only x/T - max/T is finite
    x = _largest(dtype)
    t = table(impl)
    with warnings.catch_warnings():   # NumPy warns that x - max overflowed: the -inf it is
        warnings.simplefilter("ignore", RuntimeWarning)
        p, p_cache = t["softmax_forward"](x, -1, temperature)
        lp, lp_cache = t["log_softmax_forward"](x, -1, temperature)
    want_lp = rm.log_softmax_any(x, temperature)
    np.testing.assert_allclose(p, np.exp(want_lp).astype(dtype), rtol=4 * eps(dtype), atol=0)
    assert_same_nonfinite(lp, rounded(want_lp, dtype))
    fin = np.isfinite(rounded(want_lp, dtype))
    np.testing.assert_allclose(lp[fin], want_lp[fin], rtol=4 * eps(dtype), atol=4 * eps(dtype))
    dy = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 1.0, -4.0]], dtype)
    for name, cache, probs in (("softmax", p_cache, np.exp(want_lp)),
                               ("log_softmax", lp_cache, np.exp(want_lp))):
        dx = t[f"{name}_backward"](dy, cache)
        d = dy.astype(np.float64)
        if name == "softmax":
            want = probs * (d - np.sum(d * probs, -1, keepdims=True)) / temperature
        else:
            want = (d - probs * np.sum(d, -1, keepdims=True)) / temperature
        np.testing.assert_allclose(dx, want, rtol=0, atol=16 * eps(dtype) / temperature)


@impls
@dtypes
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_nan_or_plus_inf_in_a_row_gives_a_nan_row(impl, dtype, op, temperature):
    x = np.array([[1.0, np.nan, 0.0, 2.0], [np.inf, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0],
                  [-np.inf] * 4], dtype)
    with warnings.catch_warnings():       # the reference's inf - inf (invalid value) is the NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        y, cache = table(impl)[f"{op}_forward"](x, -1, temperature)
        dx = table(impl)[f"{op}_backward"](np.ones_like(x), cache)
    assert np.all(np.isnan(y[:2])) and np.all(np.isnan(dx[:2]))
    exact = (rm.softmax if op == "softmax" else rm.log_softmax)(x[2:], -1, temperature)
    assert_close_where_finite(y[2:], exact, 8 * eps(dtype) * 4 / temperature)
    assert np.all(np.isfinite(dx[2:]))


@impls
@pytest.mark.parametrize("dtype, offset", [(np.float32, 1e4), (np.float64, 1e12)],
                         ids=["f32-1e4", "f64-1e12"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_log_softmax_at_large_logits_is_exact_to_a_few_ulps_of_the_result(impl, dtype, offset,
                                                                           temperature):
    # The logits round at the ulp of the offset; the log-probabilities (a few units) must not:
    # x - max is exact there, and m + log s is never formed.
    x = (offset + np.random.default_rng(1).standard_normal((3, 37)) * 2).astype(dtype)
    y, _ = table(impl)["log_softmax_forward"](x, -1, temperature)
    exact = rm.log_softmax_any(x, temperature)
    err = np.max(np.abs(y - exact))
    assert err <= 8 * eps(dtype) * max(1.0, np.max(np.abs(exact))), err


@impls
@dtypes
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", [((2, 0), -1), ((0, 3), 0), ((0, 3), 1), ((3, 0, 2), 1)])
def test_an_empty_axis_gives_an_empty_result(impl, dtype, op, shape, axis):
    x = np.ones(shape, dtype)
    y, cache = table(impl)[f"{op}_forward"](x, axis, 1.0)
    assert y.shape == shape and y.dtype == dtype
    dx = table(impl)[f"{op}_backward"](np.ones_like(x), cache)
    assert dx.shape == shape and dx.dtype == dtype


# GELU --------------------------------------------------------------------------------------

@impls
@dtypes
def test_gelu_takes_its_limits_at_infinity_and_keeps_nan(impl, dtype):
    big = float(np.finfo(dtype).max)
    x = np.array([np.nan, np.inf, -np.inf, big, -big, 1e30, -1e30, 12.0, -12.0], dtype)
    y, cache = table(impl)["gelu_forward"](x)
    dx = table(impl)["gelu_backward"](np.ones_like(x), cache)
    # |x| >= 10: tanh is ±1 exactly, so gelu is x or 0 and its derivative 1 or 0
    limit = np.where(np.isnan(x), np.nan, np.where(x > 0, x, 0.0))
    np.testing.assert_array_equal(y, limit)                       # NaN at NaN only
    np.testing.assert_array_equal(dx, np.where(np.isnan(x), np.nan, (x > 0).astype(dtype)))


@impls
@dtypes
def test_gelu_near_the_saturation_is_finite_and_close(impl, dtype):
    # x just inside ±10, where e^(-2u) overflows float32 and σ underflows
    x = np.array([-9.99, -9.9, -9.85, -9.5, -6.0, 6.0, 9.9, 9.99], dtype)
    y, cache = table(impl)["gelu_forward"](x)
    dx = table(impl)["gelu_backward"](np.ones_like(x), cache)
    tol = 8 * eps(dtype)
    np.testing.assert_allclose(y, rm.gelu(x), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, rm.gelu_grad(x), rtol=tol, atol=tol)


@impls
@dtypes
def test_bias_gelu_is_gelu_of_the_sum_at_the_edges(impl, dtype):
    # the limits, NaN and the saturated tails as gelu's, with the bias added first; dbias
    # sums dx over the rows (a NaN row poisons its column only)
    big = float(np.finfo(dtype).max)
    x = np.array([[np.nan, np.inf, -np.inf, big, 1.0],
                  [0.5, -12.0, 12.0, -big, -9.9]], dtype)
    b = np.array([1.0, 0.0, 0.0, 0.0, 0.5], dtype)
    y, cache = table(impl)["bias_gelu_forward"](x, b)
    dx, db = table(impl)["bias_gelu_backward"](np.ones_like(x), cache)
    g, gc = table(impl)["gelu_forward"](x + b)
    np.testing.assert_array_equal(y, g)
    np.testing.assert_array_equal(dx, table(impl)["gelu_backward"](np.ones_like(x), gc))
    np.testing.assert_allclose(db, dx.astype(np.float64).sum(axis=0), rtol=4 * eps(dtype))
    assert y.dtype == dx.dtype == db.dtype == dtype


@impls
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 4)])
def test_bias_gelu_of_empty_dims(impl, shape):
    x = np.ones(shape, np.float32)
    y, cache = table(impl)["bias_gelu_forward"](x, np.ones(shape[-1], np.float32))
    dx, db = table(impl)["bias_gelu_backward"](np.ones_like(x), cache)
    assert y.shape == dx.shape == shape
    np.testing.assert_array_equal(db, np.zeros(shape[-1], np.float32))   # a sum over no rows


# LayerNorm ---------------------------------------------------------------------------------

def _extreme_rows(dtype):
    big = float(np.finfo(dtype).max)
    rows = [[big] * 4, [-big / 3] * 4, [1e-30, -1e-30, 2e-30, 0.0], [big, -big, big, 0.0]]
    if dtype == np.float64:
        rows += [[1e308] * 4, [1e200, -1e200, 3e200, 0.0], [1e300, -1e300, 1e300, -1e300]]
    else:
        rows += [[1e20, -1e20, 3e20, 0.0], [3e38, -3e38, 1.0, 0.0], [1e38] * 4]
    return np.array(rows, dtype)


def _scaled_exact(x, w, b, eps_, dy):
    """LayerNorm and its dx row by row on x / 2^k (exact scaling, eps / 4^k), mapped back:
    y is the same, dx is divided by 2^k."""
    ys, dxs = [], []
    for row, drow in zip(x.astype(np.float64), dy.astype(np.float64)):
        a = float(np.max(np.abs(row)))
        constant = np.all(row == row[0])          # exact unscaled: var = 0, eps matters
        k = math.frexp(a)[1] if a > 1 and not constant else 0
        # eps / 4^k underflows for huge rows, where only constant rows (xhat = 0) feel it
        u, e = np.ldexp(row[None], -k), max(math.ldexp(eps_, -2 * k), 5e-324)
        ys.append(rm.layer_norm(u, 1, w, b, eps=e)[0])
        dxs.append(np.ldexp(rm.layer_norm_grad(u, drow[None], w, eps=e)[0], -k))
    return np.array(ys), np.array(dxs)


@impls
@dtypes
def test_layer_norm_is_exact_at_any_magnitude(impl, dtype):
    x = _extreme_rows(dtype)
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal(4).astype(dtype), rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = table(impl)["layer_norm_forward"](x, (4,), w, b, 1e-5)
    dx, dw, db = table(impl)["layer_norm_backward"](dy, cache)
    want_y, want_dx = _scaled_exact(x, w, b, 1e-5, dy)
    constant = np.all(x == x[:, :1], axis=1)
    np.testing.assert_array_equal(y[constant], np.broadcast_to(b, y[constant].shape))
    np.testing.assert_allclose(y, want_y, rtol=0, atol=32 * eps(dtype) * np.max(np.abs(want_y)))
    # float32 rows spanning ±3e38 have a subnormal rstd (~3e-39) and dx of that size
    sub = float(np.finfo(dtype).smallest_subnormal)
    tol = 64 * eps(dtype) * np.abs(want_dx).max(1, keepdims=True) + 64 * sub     # per row
    assert np.all(np.abs(dx - want_dx) <= tol), np.abs(dx - want_dx).max(1)
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=8 * eps(dtype))
    assert np.all(np.isfinite(dw))


@impls
@dtypes
def test_layer_norm_nan_or_inf_in_a_row_gives_a_nan_row(impl, dtype):
    x = np.array([[np.nan, 1.0, 2.0, 3.0], [np.inf, 0.0, 1.0, 2.0], [1.0, 2.0, 4.0, 8.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)       # the reference's inf - inf
        y, cache = table(impl)["layer_norm_forward"](x, (4,), None, None, 1e-5)
        dx = table(impl)["layer_norm_backward"](np.ones_like(x), cache)[0]
    assert np.all(np.isnan(y[:2])) and np.all(np.isnan(dx[:2]))
    np.testing.assert_allclose(y[2], rm.layer_norm(x[2:], 1)[0], atol=16 * eps(dtype))


@impls
@dtypes
def test_layer_norm_of_no_rows_is_empty_with_zero_parameter_gradients(impl, dtype):
    x = np.ones((0, 3, 4), dtype)
    w, b = np.ones(4, dtype), np.zeros(4, dtype)
    y, cache = table(impl)["layer_norm_forward"](x, (4,), w, b, 1e-5)
    dx, dw, db = table(impl)["layer_norm_backward"](np.ones_like(x), cache)
    assert y.shape == dx.shape == x.shape and y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(dw, np.zeros(4, dtype))
    np.testing.assert_array_equal(db, np.zeros(4, dtype))


def test_layer_norm_refuses_an_eps_that_rounds_to_zero_in_the_dtype():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="eps"):
        F.layer_norm(x, 3, eps=1e-46)
    F.layer_norm(x.astype(np.float64), 3, eps=1e-46)              # float64 holds it


# cross-entropy -----------------------------------------------------------------------------

@impls
@dtypes
def test_cross_entropy_of_a_ruled_out_target_is_inf_with_a_finite_gradient(impl, dtype):
    big = float(np.finfo(dtype).max)
    z = np.array([[-np.inf] * 4,                     # fully masked row
                  [0.0, -np.inf, 1.0, 2.0],          # the target's logit is -inf
                  [1.0, 2.0, 3.0, 4.0],
                  [big, -big, 0.0, 1.0]], dtype)     # loss exactly 0
    t = np.array([0, 1, 3, 0])
    with warnings.catch_warnings():   # NumPy warns that -max - max overflowed: exp(-inf) = 0
        warnings.simplefilter("ignore", RuntimeWarning)
        loss, cache = table(impl)["cross_entropy_forward"](z, t)
        dz = table(impl)["cross_entropy_backward"](1.0, cache)
    assert np.asarray(loss).dtype == dtype and float(loss) == math.inf
    p = np.zeros(z.shape)                            # softmax, 0 for the all -inf row
    p[1:] = rm.softmax_any(z[1:])
    want = (p - np.eye(4)[t]) / 4
    np.testing.assert_allclose(dz, want, rtol=0, atol=8 * eps(dtype))
    np.testing.assert_array_equal(dz[0], np.array([-0.25, 0, 0, 0], dtype))


@impls
@dtypes
def test_cross_entropy_of_a_nan_or_inf_row_is_nan_there_only(impl, dtype):
    z = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]], dtype)
    for rows in ([0, 2], [1, 2]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            loss, cache = table(impl)["cross_entropy_forward"](z[rows], np.array([0, 2]))
            dz = table(impl)["cross_entropy_backward"](1.0, cache)
        assert math.isnan(float(loss))
        assert np.all(np.isnan(dz[0])) and np.all(np.isfinite(dz[1]))


# attention ---------------------------------------------------------------------------------

def _attention(impl, q, k, v, causal, dy):
    t = table(impl)
    y, cache = t["scaled_dot_product_attention_forward"](q, k, v, causal=causal, scale=0.5)
    return y, t["scaled_dot_product_attention_backward"](dy, cache)


@impls
@dtypes
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t_len, s_len, dv, batch", [(3, 0, 5, 2), (0, 3, 5, 2), (3, 4, 0, 2),
                                                     (3, 4, 5, 0)],
                         ids=["no-keys", "no-queries", "dv=0", "no-batch"])
def test_attention_with_empty_dims(impl, dtype, causal, t_len, s_len, dv, batch):
    rng = np.random.default_rng(3)
    q = rng.standard_normal((batch, t_len, 4)).astype(dtype)
    k = rng.standard_normal((batch, s_len, 4)).astype(dtype)
    v = rng.standard_normal((batch, s_len, dv)).astype(dtype)
    dy = rng.standard_normal((batch, t_len, dv)).astype(dtype)
    y, (dq, dk, dvv) = _attention(impl, q, k, v, causal, dy)
    # no key: every query outputs zeros and gets a zero dq
    assert y.shape == (batch, t_len, dv) and y.dtype == dtype
    if s_len == 0:
        np.testing.assert_array_equal(y, np.zeros_like(y))
    for g, a in ((dq, q), (dk, k), (dvv, v)):
        assert g.shape == a.shape and g.dtype == dtype
    if s_len == 0 or dv == 0:
        np.testing.assert_array_equal(dq, np.zeros_like(q))
    if t_len == 0:
        np.testing.assert_array_equal(dk, np.zeros_like(k))
        np.testing.assert_array_equal(dvv, np.zeros_like(v))


def test_attention_refuses_zero_features():
    q = np.ones((2, 3, 0))
    with pytest.raises(ValueError, match="q"):
        F.scaled_dot_product_attention(q, q, np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="q"):
        F.scaled_dot_product_attention(q, q, np.ones((2, 3, 4)), scale=1.0)


@impls
@dtypes
@pytest.mark.parametrize("causal", [False, True])
def test_attention_nan_reaches_exactly_the_queries_that_see_it(impl, dtype, causal):
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 4, 3)).astype(dtype) for _ in range(3))
    dy = rng.standard_normal((2, 4, 3)).astype(dtype)
    clean, _ = _attention(impl, q, k, v, causal, dy)
    qn, kn = q.copy(), k.copy()
    qn[0, 1, 0] = np.nan                              # query 1 of head 0
    kn[1, 2, 1] = np.nan                              # key 2 of head 1
    y, grads = _attention(impl, qn, kn, v, causal, dy)
    nan = np.zeros((2, 4), bool)
    nan[0, 1] = True
    nan[1] = np.arange(4) >= 2 if causal else True    # the queries that see key 2
    np.testing.assert_array_equal(np.isnan(y).any(-1), nan)
    assert np.all(np.isnan(y[nan]))
    np.testing.assert_allclose(y[~nan], clean[~nan], rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.all(np.isfinite(grads[0][0, [0, 2, 3]]))   # head 0's other queries


@impls
@dtypes
def test_attention_over_identical_keys_averages_the_values(impl, dtype):
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 3, 4)).astype(dtype) * 100
    k = np.broadcast_to(rng.standard_normal((1, 1, 4)), (1, 5, 4)).astype(dtype)
    v = rng.standard_normal((1, 5, 2)).astype(dtype)
    y, _ = _attention(impl, q, k, v, False, np.ones((1, 3, 2), dtype))
    np.testing.assert_allclose(y, np.broadcast_to(v.astype(np.float64).mean(1, keepdims=True),
                                                  y.shape), rtol=0, atol=8 * eps(dtype))
