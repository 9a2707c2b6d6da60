"""numba-cuda kernels against the reference, on numba-cuda's CUDA simulator when there is no GPU.

conftest.py sets NUMBA_ENABLE_CUDASIM=1 on machines without `nvidia-smi`; the kernels then run
on NumPy arrays, each GPU thread a Python thread, so shapes stay tiny (rows <= 4, width <= 40)
and Hypothesis draws only a few examples. On a GPU machine the simulator is off and these tests
need CuPy arrays, so they skip there: tests/test_cupy_end_to_end.py covers the real device.

Every case runs the reference in the kernel's dtype (its own error sets the budget) and in a
wider dtype (float32 -> float64, float64 -> long double) as the exact answer, and pairs every
kernel/reference forward with every kernel/reference backward (they share the cache type).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanonorm.ops.registry import KERNELS as R
from nanonorm.testing import assert_close_budget
from nanonorm.testing.strategies import dtypes, float_arrays

numba_cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
if not numba_cuda.config.ENABLE_CUDASIM:
    pytest.skip("a GPU is present: the CUDA kernels are tested on CuPy arrays in "
                "test_cupy_end_to_end.py, not on the simulator", allow_module_level=True)

from nanonorm.kernels.cuda import KERNELS as K  # noqa: E402  (after the simulator check)
from nanonorm.kernels.cuda._common import SIM_THREADS  # noqa: E402

WIDER = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}
FEW = settings(max_examples=4)        # the simulator runs ~1 ms per thread per launch
WIDTHS = st.integers(1, 40)           # 1, odd, and past one block of SIM_THREADS (32)


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
    """Budget-check the kernel forward, and backward for the (K,K), (K,R), (R,K) pairings."""
    fwd_kw = fwd_kw or {}
    dtype = np.dtype(dtype)
    a, a_wide = _cast(args, dtype), _cast(args, WIDER[dtype])
    dy, dy_wide = dy.astype(dtype), dy.astype(WIDER[dtype])
    exact_out, exact_cache = R[fwd](*a_wide, **fwd_kw)
    exact_grads = _arrays(R[bwd](dy_wide, exact_cache))
    ref_out, ref_cache = R[fwd](*a, **fwd_kw)
    ref_grads = _arrays(R[bwd](dy, ref_cache))
    k_out, k_cache = K[fwd](*a, **fwd_kw)
    assert type(k_cache) is type(ref_cache)
    assert np.asarray(k_out).dtype == np.asarray(ref_out).dtype
    assert np.shape(k_out) == np.shape(ref_out)
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


def test_registry_matches_reference_signatures():
    import inspect
    assert set(K) <= set(R)
    def params(f):  # names, kinds and defaults; annotations may differ
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    for op, f in K.items():
        assert params(f) == params(R[op]), op


# LayerNorm -----------------------------------------------------------------------------------

@st.composite
def ln_case(draw):
    rows, c = draw(st.integers(1, 4)), draw(WIDTHS)
    shape = draw(st.sampled_from([(rows, c), (c,), (1, rows, c)]))
    x = draw(float_arrays(shape, np.float64))
    w = draw(float_arrays((c,), np.float64, kinds=("normal",))) if draw(st.booleans()) else None
    b = draw(float_arrays((c,), np.float64, kinds=("normal",))) if draw(st.booleans()) else None
    dy = draw(float_arrays(shape, np.float64, kinds=("normal",)))
    return x, (c,), w, b, dy


@FEW
@given(case=ln_case(), dtype=dtypes())
def test_layer_norm(case, dtype):
    x, dims, w, b, dy = case
    check_pairings("layer_norm_forward", "layer_norm_backward", (x, dims, w, b), dy, dtype,
                   name="layer_norm")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_odd_width_and_hard_rows(dtype):
    # 37 columns: one full block of 32 threads plus a ragged tail; a 2-D normalized_shape;
    # a constant row (xhat exactly 0) and a row with a large offset (cancellation).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 37))
    x[1] = 1e3 + 0.1
    x[2] = 1e4 + x[2]
    w, b = rng.standard_normal((1, 37)), rng.standard_normal((1, 37))
    dy = rng.standard_normal(x.shape)
    y, _ = check_pairings("layer_norm_forward", "layer_norm_backward", (x, (1, 37), w, b), dy,
                          dtype, name="layer_norm")
    assert np.array_equal(y[1], np.broadcast_to(b.astype(dtype), (1, 37)))   # xhat = 0 exactly
    assert 37 > SIM_THREADS and 37 % SIM_THREADS


def test_layer_norm_more_rows_than_backward_blocks(monkeypatch):
    # several rows per block in the backward: the dγ/dβ partials accumulate over rows
    from nanonorm.kernels.cuda import layernorm
    monkeypatch.setattr(layernorm, "BWD_BLOCKS", 2)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((5, 9)), rng.standard_normal((5, 9))
    w, b = rng.standard_normal(9), rng.standard_normal(9)
    check_pairings("layer_norm_forward", "layer_norm_backward", (x, (9,), w, b), dy,
                   np.float32, name="layer_norm")


def test_layer_norm_deterministic():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((3, 33)), rng.standard_normal((3, 33))
    w = rng.standard_normal(33)
    _, cache = K["layer_norm_forward"](x, (33,), w, w)
    first, second = K["layer_norm_backward"](dy, cache), K["layer_norm_backward"](dy, cache)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
