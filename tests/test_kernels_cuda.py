"""numba-cuda kernels against the reference: on the CUDA simulator without a GPU, on CuPy arrays
with one.

conftest.py sets NUMBA_ENABLE_CUDASIM=1 on machines without `nvidia-smi`, before numba is
imported; numba reads it once, so `SIMULATOR` below is the decision for the whole run.
- Simulator: the kernels run on NumPy arrays, each GPU thread a Python thread, so shapes stay
  tiny (rows <= 4, width <= 40) and Hypothesis draws only a few examples. The simulator's
  small launch geometry (_common.SIM_THREADS, layernorm_bwd.SIM_*) lets these shapes reach
  every multi-thread and multi-block path.
- GPU: the same tests through `K`, which moves NumPy inputs to the device (cupy.asarray),
  runs the kernels there and brings results (caches included) back (cupy.asnumpy); the
  reference stays on NumPy. The test_gpu_* tests add real shapes, where the GPU's own block
  counts take the multi-block paths; they skip under the simulator.

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

from cuda_device import SIMULATOR, XP, dev, host, needs_gpu, on_device  # noqa: E402

from nanonorm.kernels.cuda import KERNELS as CUDA  # noqa: E402  (after the simulator check)
from nanonorm.kernels.cuda import layernorm_bwd  # noqa: E402
from nanonorm.kernels.cuda._common import SIM_THREADS, THREADS  # noqa: E402


# the table the tests call: NumPy in and out on both
K = CUDA if SIMULATOR else {op: on_device(f) for op, f in CUDA.items()}
FEW = settings(max_examples=4 if SIMULATOR else 25)   # simulator: ~1 ms per thread per launch
WIDTHS = st.integers(1, 40)           # 1, odd, and past one block of SIM_THREADS (16)


# the CUDA table against the reference (the budget's defaults: no kernel-made cache keeps less)
check_pairings = functools.partial(check_kernel_pairings, K)


def test_registry_matches_reference_signatures():
    import inspect
    assert set(CUDA) <= set(R)
    def params(f):  # names, kinds and defaults; annotations may differ
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]
    for op, f in CUDA.items():
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
    # 37 columns: two full blocks of 16 threads plus a ragged tail; a 2-D normalized_shape;
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


@pytest.mark.parametrize("n, c, dtype, weight", [(7, 37, np.float32, True),
                                                (9, 5, np.float64, True),
                                                (5, 3, np.float32, False)])
def test_layer_norm_backward_blocks_rows_and_tiles(n, c, dtype, weight):
    # Under the simulator's geometry (3 blocks; 2 columns per thread; partials summed by
    # blocks of 16 columns x 2 row groups):
    # (7, 37): blocks of 3, 3 and 1 rows; 2 column tiles of 2·16 columns, the second ragged,
    #          so the row sums come from _sums; 3 partial rows summed by 2 groups;
    # (9, 5): blocks of 3 rows; 8 threads for 5 columns (some idle);
    # (5, 3): blocks of 2, 2 and 1 rows; no weight (dγ not returned, dβ still summed).
    rng = np.random.default_rng(n * c)
    x, dy = rng.standard_normal((n, c)) * 3 + 1, rng.standard_normal((n, c))
    w = rng.standard_normal(c) if weight else None
    check_pairings("layer_norm_forward", "layer_norm_backward",
                   (x, (c,), w, rng.standard_normal(c)), dy, dtype, name="layer_norm")
    if SIMULATOR:                                 # (blocks, rows per block, threads, tiles)
        expected = {(7, 37): (3, 3, 16, 2), (9, 5): (3, 3, 8, 1), (5, 3): (3, 2, 4, 1)}
        assert layernorm_bwd.geometry(n, c) == expected[(n, c)]


def test_layer_norm_backward_is_bit_identical_run_to_run():
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((5, 35)).astype(np.float32), rng.standard_normal((5, 35))
    w = rng.standard_normal(35).astype(np.float32)          # 3 blocks, 2 column tiles
    _, cache = K["layer_norm_forward"](x, (35,), w, w)
    first = K["layer_norm_backward"](dy.astype(np.float32), cache)
    second = K["layer_norm_backward"](dy.astype(np.float32), cache)
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


def _check_causal_softmax_rows(b, t, s, dtype, scale=0.7):
    """softmax_rows with the causal mask on (b·t, s) scores against the reference softmax of
    the masked scores: query q sees keys j <= q + s - t; a query seeing none gets zeros."""
    from nanonorm.kernels.cuda.softmax import softmax_rows
    rng = np.random.default_rng(b * t * s)
    x = rng.standard_normal((b, t, s)) * 3
    visible = np.arange(s)[None, :] <= np.arange(t)[:, None] + s - t              # (T, S)
    got = host(softmax_rows(dev(x.astype(dtype).reshape(b * t, s)), scale, False, True, t))
    masked = [np.where(visible, x.astype(dt) * scale, -np.inf).reshape(b * t, s)
              for dt in (dtype, WIDER[np.dtype(dtype)])]
    ref, exact = (R["softmax_forward"](m, -1)[0] for m in masked)
    assert_close_budget(got, ref, exact, name="causal softmax")
    assert np.all(got.reshape(b, t, s)[:, ~visible] == 0)
    return got


@pytest.mark.parametrize("b, t, s, dtype", [(2, 11, 37, np.float32), (1, 19, 13, np.float64)])
def test_causal_softmax_rows(b, t, s, dtype):
    # T not a multiple of anything, two batches (the query is row % T); rows wider than a
    # block (37 > 16 threads); T > S: the first T - S queries see no key
    got = _check_causal_softmax_rows(b, t, s, dtype)
    if t > s:
        assert np.all(got.reshape(b, t, s)[:, :t - s] == 0)


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


def test_cross_entropy_target_out_of_range_reads_nothing_outside_its_row():
    # targets on a GPU are range-checked there and raised later (nanonorm.device_checks):
    # until then the kernel reads no logit outside the row (99 would read another row's, -5
    # the row before), the bad rows' losses are NaN and the good rows' gradients are right
    rng = np.random.default_rng(8)
    z = rng.standard_normal((4, 40))
    t = np.array([3, 99, -5, 39])
    loss, cache = K["cross_entropy_forward"](z, t)
    assert np.isnan(host(loss))
    dz = host(K["cross_entropy_backward"](1.0, cache))
    _, ref = R["cross_entropy_forward"](z[[0, 3]], t[[0, 3]])
    np.testing.assert_allclose(dz[[0, 3]], R["cross_entropy_backward"](0.5, ref), rtol=1e-12)
    np.testing.assert_allclose(dz[1:3].sum(axis=1), 0.25, rtol=1e-12)  # Σ p/N: no target -1


# AdamW ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw(dtype, weight_decay):
    shape = (3, 37)                                     # more than one block of SIM_THREADS
    check_adamw_kernel(K, shape, dtype, weight_decay=weight_decay, seed=7)


def test_adamw_non_contiguous_param():
    p = XP.ones((6, 8), np.float32)[:, ::2]             # a strided view is updated in place
    m, v = XP.zeros_like(p), XP.zeros_like(p)
    CUDA["adamw_step"](p, XP.ones_like(p), m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                       weight_decay=0.0, step=1)
    np.testing.assert_allclose(host(p), 0.9, rtol=1e-6)
    np.testing.assert_allclose(host(m), 0.1, rtol=1e-6)
    np.testing.assert_allclose(host(v), 1e-3, rtol=1e-6)


# attention -----------------------------------------------------------------------------------
# Drawn cases against the reference: tests/test_kernels_cuda_attention.py, under the budget of
# a log-sum-exp cache (the default budget holds only for a cache that keeps p).

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
        f"assert len(kc.KERNELS) == {len(CUDA)}\n"     # the table this process sees
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
    from numba import types
    from nanonorm.kernels.cuda import ptx_check
    assert r.stdout.count("ok ") == 2 * len(ptx_check.signatures(types.float32))


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


@pytest.mark.skipif(not SIMULATOR, reason="inspects the simulator's kernel objects "
                    "(FakeCUDAKernel); the same declarations are checked wherever it runs")
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
    # the kernels' declared types, written out: float arrays in the kernel's own dtype
    # (accumulators and partials included), float64 only for scalar arguments. A kernel added
    # later joins ptx_check without an edit here (the test above holds every kernel to a
    # declaration).
    from numba import types
    from nanonorm.kernels.cuda import ptx_check
    ft = getattr(types, ft_name)
    a1, a2, f64, b, i64 = ft[::1], ft[:, ::1], types.float64, types.boolean, types.int64
    expected = {
        "layernorm._forward": (a2, a1, a1, b, b, f64, a2, a2, a2),
        "layernorm_bwd._backward": (a2, a2, a2, a2, a1, b, i64, a2, b, a2, ft[:, :, ::1]),
        "layernorm_bwd._sums": (a2, a2, a2, a2, a1, b, a2),
        "layernorm_bwd._sum_partials": (ft[:, :, ::1], a2),
        "softmax._forward": (a2, f64, f64, b, i64, b, a2),
        "softmax._backward": (a2, a2, f64, b, a2),
        "gelu._forward": (a1, f64, f64, f64, a1),
        "gelu._backward": (a1, a1, f64, f64, f64, a1),
        "loss._forward": (a2, i64[::1], a2, a1),
        "loss._backward": (a2, a2, i64[::1], a1, a2),
        "adamw._step": (a1, a1, a1, a1) + (f64,) * 8,
    }
    got = ptx_check.signatures(ft)
    assert {name: got[name][1] for name in expected if name in got} == expected
    for name, (k, _) in got.items():             # the module's own kernel object
        module, attr = name.split(".")
        assert k is getattr(importlib.import_module(f"nanonorm.kernels.cuda.{module}"), attr)


# real shapes, the GPU's own geometry: every multi-block path ---------------------------------

@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, c", [(8192, 768), (1031, 3001)])
def test_gpu_layer_norm_at_real_shapes(n, c, dtype):
    # GPT-2 small's N = B·T = 8·1024 rows over 512 blocks of 16 rows; 3001 columns (not a
    # multiple of 32) are two column tiles of 8·256 (row sums from _sums), and 1031 rows are
    # 344 blocks of 3, the last one short
    blocks, rows, nt, tiles = layernorm_bwd.geometry(n, c)
    assert n > layernorm_bwd.BWD_BLOCKS and nt == THREADS
    assert (blocks, rows, tiles) == ((512, 16, 1) if n == 8192 else (344, 3, 2))
    rng = np.random.default_rng(c)
    x, dy = rng.standard_normal((n, c)) * 2 + 1, rng.standard_normal((n, c))
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    check_pairings("layer_norm_forward", "layer_norm_backward", (x, (c,), w, b), dy, dtype,
                   name="layer_norm")


@needs_gpu
def test_gpu_layer_norm_backward_is_bit_identical_run_to_run():
    # 8192 rows: 512 blocks' partials, summed in a fixed order (no atomics) on every run
    rng = np.random.default_rng(3)
    x, dy = (XP.asarray(rng.standard_normal((8192, 768)), dtype=XP.float32) for _ in range(2))
    w = XP.asarray(rng.standard_normal(768), dtype=XP.float32)
    _, cache = CUDA["layer_norm_forward"](x, (768,), w, w)
    runs = [host(CUDA["layer_norm_backward"](dy, cache)) for _ in range(3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_gpu_softmax_over_gpt2_vocabulary(op, temperature, dtype):
    # rows of V = 50257 (not a multiple of 32): ~196 elements per thread of a 256-thread block,
    # the long per-thread chains of the pair sums
    n, v = 24, 50257
    assert v > THREADS and v % 32
    rng = np.random.default_rng(v)
    x, dy = rng.standard_normal((n, v)) * 4, rng.standard_normal((n, v))
    check_pairings(f"{op}_forward", f"{op}_backward", (x, -1, temperature), dy, dtype, name=op)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("t, s", [(700, 1031), (1100, 1000)])
def test_gpu_causal_softmax_rows_at_real_shapes(t, s, dtype):
    # T not a multiple of 32 or of the block size, T < S and T > S (100 queries see no key)
    _check_causal_softmax_rows(3, t, s, dtype)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_cross_entropy_over_gpt2_vocabulary(dtype):
    # V = 50257 logits a row, 256 threads: as the softmax above, fused with the loss
    n, v = 200, 50257
    rng = np.random.default_rng(n)
    z, t = rng.standard_normal((n, v)) * 3, rng.integers(0, v, n)
    check_pairings("cross_entropy_forward", "cross_entropy_backward", (z, t), np.asarray(0.5),
                   dtype, name="cross_entropy")
