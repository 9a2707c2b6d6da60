"""numba-cuda kernels against the reference, on numba-cuda's CUDA simulator when there is no GPU.

conftest.py sets NUMBA_ENABLE_CUDASIM=1 on machines without `nvidia-smi`; the kernels then run
on NumPy arrays, each GPU thread a Python thread, so shapes stay tiny (rows <= 4, width <= 40)
and Hypothesis draws only a few examples. On a GPU machine the simulator is off and these tests
need CuPy arrays, so they skip there: tests/test_cupy_end_to_end.py covers the real device.

Every case runs the reference in the kernel's dtype (its own error sets the budget) and in a
wider dtype (float32 -> float64, float64 -> long double) as the exact answer, and pairs every
kernel/reference forward with every kernel/reference backward (they share the cache type).
"""
import functools
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanonorm.ops.registry import KERNELS as R
from nanonorm.testing import (WIDER, assert_close_budget, check_adamw_kernel,
                              check_kernel_pairings)
from nanonorm.testing.strategies import dtypes, float_arrays

numba_cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
if not numba_cuda.config.ENABLE_CUDASIM:
    pytest.skip("a GPU is present: the CUDA kernels are tested on CuPy arrays in "
                "test_cupy_end_to_end.py, not on the simulator", allow_module_level=True)

from nanonorm.kernels.cuda import KERNELS as K  # noqa: E402  (after the simulator check)
from nanonorm.kernels.cuda._common import SIM_THREADS  # noqa: E402

FEW = settings(max_examples=4)        # the simulator runs ~1 ms per thread per launch
WIDTHS = st.integers(1, 40)           # 1, odd, and past one block of SIM_THREADS (32)


# the CUDA table against the reference (the budget's defaults: no kernel-made cache keeps less)
check_pairings = functools.partial(check_kernel_pairings, K)


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


# softmax / log_softmax -------------------------------------------------------------------------

@st.composite
def softmax_case(draw):
    rows, c = draw(st.integers(1, 4)), draw(WIDTHS)
    shape = draw(st.sampled_from([(rows, c), (c, rows), (1, c, rows)]))
    axis = draw(st.sampled_from([-1, 1, -2])) if len(shape) == 3 else \
        (-1 if shape[-1] == c else 0)           # the axis of length c
    x = draw(float_arrays(shape, np.float64, magnitudes=(1e-3, 1.0, 30.0)))
    dy = draw(float_arrays(shape, np.float64, kinds=("normal",)))
    return x, axis, draw(st.sampled_from([1.0, 0.5, 3.0])), dy


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@FEW
@given(case=softmax_case(), dtype=dtypes())
def test_softmax(op, case, dtype):
    x, axis, temperature, dy = case
    check_pairings(f"{op}_forward", f"{op}_backward", (x, axis, temperature), dy, dtype,
                   name=op)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_masked_rows(op, dtype):
    x = np.random.default_rng(3).standard_normal((4, 37)).astype(dtype)
    x[1] = -np.inf                           # fully masked row
    x[2, 5:] = -np.inf                       # causal-style partial mask
    y, cache = K[f"{op}_forward"](x, -1, 0.5)
    y_ref, ref_cache = R[f"{op}_forward"](x, -1, 0.5)
    np.testing.assert_array_equal(y[1], y_ref[1])     # zeros, or -inf for log_softmax
    np.testing.assert_array_equal(y[1], 0.0 if op == "softmax" else -np.inf)
    exact = R[f"{op}_forward"](x.astype(WIDER[np.dtype(dtype)]), -1, 0.5)[0]
    assert_close_budget(y, y_ref, exact, name=f"{op} masked")      # also: same inf pattern
    dy = np.random.default_rng(4).standard_normal(x.shape).astype(dtype)
    for c in (cache, ref_cache):                                   # K bwd on K and R caches
        g = K[f"{op}_backward"](dy, c)
        assert np.all(np.isfinite(g))
        assert_close_budget(g, R[f"{op}_backward"](dy, ref_cache),
                            R[f"{op}_backward"](dy.astype(exact.dtype),
                                                R[f"{op}_forward"](x.astype(exact.dtype), -1,
                                                                   0.5)[1]),
                            name=f"{op} masked grad")


def test_softmax_rows_sum_to_one_and_shift_invariant():
    x = np.random.default_rng(5).standard_normal((3, 33)) * 10
    p, _ = K["softmax_forward"](x)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(K["softmax_forward"](x + 1e3)[0], p, rtol=1e-9, atol=1e-15)


# GELU ----------------------------------------------------------------------------------------

@FEW
@given(x=float_arrays(st.sampled_from([(1,), (3, 13), (2, 2, 9)]), np.float64,
                      magnitudes=(1e-3, 1.0, 4.0, 30.0)),
       dtype=dtypes(), seed=st.integers(0, 2**16))
def test_gelu(x, dtype, seed):
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    check_pairings("gelu_forward", "gelu_backward", (x,), dy, dtype, name="gelu")


def test_gelu_grid_stride_and_saturation():
    # more elements than one block, and values past the tanh saturation (exactly x or -0)
    x = np.linspace(-40.0, 40.0, 77)
    y, _ = check_pairings("gelu_forward", "gelu_backward", (x,), np.ones(77), np.float32,
                          name="gelu")
    np.testing.assert_array_equal(y[x >= 10], x[x >= 10].astype(np.float32))
    np.testing.assert_array_equal(y[x <= -10], 0.0)


# cross-entropy -------------------------------------------------------------------------------

@st.composite
def ce_case(draw):
    n, v = draw(st.integers(1, 4)), draw(WIDTHS)
    lead = draw(st.sampled_from([(n,), (1, n)]))
    z = draw(float_arrays(lead + (v,), np.float64, magnitudes=(1e-3, 1.0, 30.0)))
    t = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, v, lead)
    return z, t, draw(st.sampled_from([1.0, 0.25]))


@FEW
@given(case=ce_case(), dtype=dtypes())
def test_cross_entropy(case, dtype):
    z, t, dloss = case
    check_pairings("cross_entropy_forward", "cross_entropy_backward", (z, t),
                   np.asarray(dloss), dtype, name="cross_entropy")


def test_cross_entropy_large_logits_and_masked_classes():
    # logits of 1e4 (float32 ulp ~1e-3) and -inf classes that are never the target
    rng = np.random.default_rng(6)
    z = rng.standard_normal((3, 35)) + 1e4
    z[:, 30:] = -np.inf
    t = np.array([0, 29, 7])
    check_pairings("cross_entropy_forward", "cross_entropy_backward", (z, t), np.asarray(1.0),
                   np.float32, name="cross_entropy")


# AdamW ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw(dtype, weight_decay):
    shape = (3, 37)                                     # more than one block of SIM_THREADS
    check_adamw_kernel(K, shape, dtype, weight_decay=weight_decay, seed=7)


def test_adamw_non_contiguous_param():
    p = np.ones((6, 8), np.float32)[:, ::2]             # a strided view is updated in place
    m, v = np.zeros_like(p), np.zeros_like(p)
    K["adamw_step"](p, np.ones_like(p), m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, step=1)
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)
    np.testing.assert_allclose(m, 0.1, rtol=1e-6)
    np.testing.assert_allclose(v, 1e-3, rtol=1e-6)


# attention -----------------------------------------------------------------------------------

@st.composite
def attention_case(draw):
    lead = draw(st.sampled_from([(), (1,), (2,)]))
    t, s = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    d, dv = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    q, k, v, dy = (draw(float_arrays((*lead, n, c), np.float64, magnitudes=(1.0, 3.0),
                                     kinds=("normal", "uniform", "outliers")))
                   for n, c in ((t, d), (s, d), (s, dv), (t, dv)))
    return q, k, v, dy, draw(st.booleans()), draw(st.sampled_from([None, 0.3]))


@FEW
@given(case=attention_case(), dtype=dtypes())
def test_attention(case, dtype):
    q, k, v, dy, causal, scale = case
    check_pairings("scaled_dot_product_attention_forward",
                   "scaled_dot_product_attention_backward", (q, k, v), dy, dtype,
                   fwd_kw=dict(causal=causal, scale=scale), name="attention")


@pytest.mark.parametrize("t,s", [(5, 3), (3, 5)])
def test_attention_causal_rows_without_keys(t, s):
    # T > S: the first T - S queries see no key and get a zero output (and zero p row)
    rng = np.random.default_rng(t * 10 + s)
    q, k, v = (rng.standard_normal((2, n, 4)) for n in (t, s, s))
    dy = rng.standard_normal((2, t, 4))
    y, _ = check_pairings("scaled_dot_product_attention_forward",
                          "scaled_dot_product_attention_backward", (q, k, v), dy, np.float32,
                          fwd_kw=dict(causal=True), name="attention")
    if t > s:
        assert np.all(y[:, :t - s] == 0)
    # causality: changing keys/values after position i leaves output i unchanged
    f = K["scaled_dot_product_attention_forward"]
    k2, v2 = k.copy(), v.copy()
    k2[:, -1], v2[:, -1] = 7.0, -7.0
    np.testing.assert_array_equal(f(q, k2, v2, causal=True)[0][:, :-1],
                                  f(q, k, v, causal=True)[0][:, :-1])


# dispatch and imports ------------------------------------------------------------------------

def test_dispatch_keeps_numpy_arrays_off_the_cuda_kernels():
    from nanonorm.dispatch import implementation_for
    x = np.zeros((2, 3), np.float32)
    for op in K:
        assert implementation_for(op, x) != "cuda", op


def _run_without_simulator(code_or_module, *args):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0", "NUMBA_FORCE_CUDA_CC": "9.0"}
    return subprocess.run([sys.executable, *args, code_or_module], env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_without_cuda_or_simulator_keeps_numpy_working():
    # No driver, no simulator: importing the CUDA kernels must not break nanonorm for NumPy
    # (kernels compile lazily, on the first launch on a GPU).
    r = _run_without_simulator(
        "import numpy as np, nanonorm, nanonorm.functional as F\n"
        "import nanonorm.kernels.cuda as kc\n"
        "from nanonorm.dispatch import implementation_for\n"
        "x = np.arange(6.0, dtype=np.float32).reshape(2, 3)\n"
        "assert len(kc.KERNELS) == 13\n"
        "assert implementation_for('layer_norm_forward', x) != 'cuda'\n"
        "y = F.layer_norm(x, (3,))\n"
        "assert y.dtype == np.float32 and abs(float(y.sum())) < 1e-5\n"
        "print('ok')\n", "-c")
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


@pytest.mark.slow
def test_every_kernel_compiles_to_ptx():
    # The real compiler, without a GPU: catches typing errors the simulator (plain Python)
    # cannot. Needs NVVM + NVRTC (CUDA toolkit or the nvidia-cuda-nvrtc wheel).
    r = _run_without_simulator("nanonorm.kernels.cuda.ptx_check", "-m")
    if r.returncode == 2:
        pytest.skip("PTX not compiled: " + r.stdout.strip()[-300:])
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert r.stdout.count("ok ") == 20


# the kernels ptx_check compiles: declared beside each kernel, found without a list ------------

def _jit_kernels():
    """("module._name", kernel) for every cuda.jit kernel (device functions aside) defined in a
    module of the package, however it was decorated: here the simulator's FakeCUDAKernel."""
    import pkgutil
    import nanonorm.kernels.cuda as package
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            # _device: the simulator's only record of cuda.jit(device=True)
            if isinstance(obj, FakeCUDAKernel) and not obj._device \
                    and obj.__module__ == module.__name__:
                yield f"{info.name}.{name}", obj


def test_every_cuda_kernel_declares_its_argument_types():
    # a plain @cuda.jit kernel would be missed by ptx_check: each must use _common.kernel, with
    # one type per parameter, and ptx_check must find each of them
    import inspect
    from numba import types
    from nanonorm.kernels.cuda import ptx_check
    found = dict(_jit_kernels())
    assert len(found) >= 10, sorted(found)
    for name, k in found.items():
        assert callable(getattr(k, "arg_types", None)), f"{name}: declare it with @kernel(...)"
        n_params = len(inspect.signature(k.__wrapped__).parameters)
        for ft in (types.float32, types.float64):
            assert len(k.arg_types(ft)) == n_params, (name, ft)
    discovered = ptx_check.signatures(types.float32)
    assert set(discovered) == set(found)
    assert all(discovered[name][0] is k for name, k in found.items())


@pytest.mark.parametrize("ft_name", ["float32", "float64"])
def test_ptx_check_finds_the_kernels_with_their_types(ft_name):
    # the list ptx_check held by hand before the types moved beside the kernels: the same
    # kernels, compiled with the same types, give the same PTX. A kernel added later joins the
    # check without an edit here (the test above holds every kernel to a declaration).
    from numba import types
    from nanonorm.kernels.cuda import ptx_check
    ft = getattr(types, ft_name)
    a1, a2, f64, b, i64 = ft[::1], ft[:, ::1], types.float64, types.boolean, types.int64
    expected = {
        "layernorm._forward": (a2, a1, a1, b, b, f64, a2, a2, a2),
        "layernorm._backward": (a2, a2, a2, a2, a1, b, a2, f64[:, ::1], f64[:, ::1]),
        "layernorm._sum_partials": (f64[:, ::1], a1),
        "softmax._forward": (a2, f64, f64, b, i64, b, a2),
        "softmax._backward": (a2, a2, f64, b, a2),
        "gelu._forward": (a1, f64, f64, f64, a1),
        "gelu._backward": (a1, a1, f64, f64, f64, a1),
        "loss._forward": (a2, i64[::1], a2, f64[::1]),
        "loss._backward": (a2, a2, i64[::1], a1, a2),
        "adamw._step": (a1, a1, a1, a1) + (f64,) * 8,
    }
    got = ptx_check.signatures(ft)
    assert {name: got[name][1] for name in expected if name in got} == expected
    for name, (k, _) in got.items():             # the module's own kernel object
        module, attr = name.split(".")
        assert k is getattr(importlib.import_module(f"nanonorm.kernels.cuda.{module}"), attr)
