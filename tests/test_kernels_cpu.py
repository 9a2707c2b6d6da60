"""Numba CPU kernels against the reference: error budgets, fwd/bwd cross-pairing, determinism.

The drawn cases every op gets from its declaration are in test_pairings.py; here are the kernels'
own hard cases (tiles, masks, huge rows, threading). Every case runs the reference in the kernel's
dtype (its own error sets the budget) and in a wider dtype (float32 -> float64, float64 -> long
double) as the exact answer, then checks every pairing of a kernel or reference forward with a
kernel or reference backward: any forward must pair with any backward, since they share the cache
type.
"""
import functools
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nanonorm
import nanonorm.functional as F
from nanonorm.dispatch import implementation_for
from nanonorm.kernels.cpu import KERNELS as K
from nanonorm.ops.registry import KERNELS as R
from nanonorm.specs.attention import backward_scale
from nanonorm.testing import (assert_close_budget, check_adamw_kernel, check_kernel_pairings,
                              result_arrays)
from nanonorm.testing.strategies import dtypes, float_arrays

# the Numba table against the reference; its positional arguments follow the kernel table's
check_pairings = functools.partial(check_kernel_pairings, K)


def assert_deterministic(fn):
    first, second = result_arrays(fn()), result_arrays(fn())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# dispatch ------------------------------------------------------------------------------------

def test_dispatch_prefers_numba_for_numpy():
    x = np.zeros((2, 3), np.float32)
    for op in K:
        assert implementation_for(op, x) == "numba", op
    with nanonorm.use_impl("reference"):
        assert implementation_for("layer_norm_forward", x) == "reference"
    # the functional API runs the kernel: its cache came from the kernel wrapper
    y, cache = F.layer_norm_forward(x + 1.0, (3,))
    assert cache.x.flags.c_contiguous and y.shape == x.shape


# LayerNorm -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_hard_rows(dtype):
    rng = np.random.default_rng(0)
    c = 771  # longer than a vector, not a multiple of 8
    big = 1e18 + rng.standard_normal((3, c)) * 1e16                   # huge mean, wide spread
    const = np.full((2, c), 1e3 + 0.1)                                  # exact xhat = 0
    x = np.concatenate([big, const]).astype(dtype)
    y, cache = K["layer_norm_forward"](x, (c,))
    assert np.array_equal(y[3:], np.zeros((2, c), dtype))
    exact = R["layer_norm_forward"](x.astype(np.longdouble), (c,))[0]
    ref = R["layer_norm_forward"](x, (c,))[0]
    assert_close_budget(y, ref, exact, name="large-magnitude rows")
    np.testing.assert_allclose(y[:3].mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(y[:3].std(axis=1), 1.0, rtol=1e-4)


def test_layer_norm_deterministic():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((517, 96)).astype(np.float32)
    w, b = rng.standard_normal(96).astype(np.float32), rng.standard_normal(96).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, cache = K["layer_norm_forward"](x, (96,), w, b)
    assert_deterministic(lambda: K["layer_norm_forward"](x, (96,), w, b))
    assert_deterministic(lambda: K["layer_norm_backward"](dy, cache))


# softmax / log_softmax -------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_masked_rows(op):
    x = np.random.default_rng(2).standard_normal((4, 37)).astype(np.float32)
    x[1] = -np.inf                           # fully masked row
    x[2, 5:] = -np.inf                       # causal-style partial mask
    y, cache = K[f"{op}_forward"](x)
    y_ref, ref_cache = R[f"{op}_forward"](x)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(y_ref))
    np.testing.assert_array_equal(y[1], y_ref[1])     # zeros, or -inf for log_softmax
    dy = np.ones_like(x)
    g = K[f"{op}_backward"](dy, cache)
    assert np.all(np.isfinite(g[[0, 2, 3]]))
    np.testing.assert_allclose(g[[0, 2, 3]], R[f"{op}_backward"](dy, ref_cache)[[0, 2, 3]],
                               atol=1e-6)


def test_vexp_accuracy():
    from nanonorm.kernels.cpu._common import vexp_array
    x = np.concatenate([np.linspace(-87.3, 88.7, 200_001),
                        np.random.default_rng(3).standard_normal(10_000)]).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    rel = np.abs(vexp_array(x) / exact - 1.0) / np.finfo(np.float32).eps
    assert rel.max() <= 3.0                                           # a few ulps
    # below the smallest normal vexp flushes to 0; vexp_subnormal (attention's) gives np.exp's
    # subnormals: a flush there made p = 0 where the reference's p is 1e-40, and gradients
    # built on it lost their whole value
    sub = np.linspace(-103.9, -87.4, 20_001).astype(np.float32)
    sub_exact = np.exp(sub.astype(np.float64))
    assert np.max(np.abs(vexp_array(sub, True) - sub_exact)) <= 2.0 ** -149   # one step
    assert np.max(np.abs(vexp_array(sub) - sub_exact)) <= np.finfo(np.float32).tiny
    np.testing.assert_array_equal(vexp_array(x, True), vexp_array(x))  # the same elsewhere
    for subnormal in (False, True):
        special = vexp_array(np.array([-np.inf, -110.0, -100.0, 0.0, 100.0, np.inf, np.nan],
                                      np.float32), subnormal)
        np.testing.assert_array_equal(special, [0.0, 0.0, np.exp(np.float32(-100.0)) * subnormal,
                                                1.0, np.inf, np.inf, np.nan])


# GELU ----------------------------------------------------------------------------------------

def test_gelu_large_block():
    # more elements than one parallel block, and saturated values
    x = np.random.default_rng(4).standard_normal(10_001) * 6
    dy = np.ones_like(x)
    check_pairings("gelu_forward", "gelu_backward", (x,), dy, np.float32, name="gelu")


# cross-entropy -------------------------------------------------------------------------------

# AdamW ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw(dtype, weight_decay):
    shape = (37, 1031)                                  # not a multiple of the block
    check_adamw_kernel(K, shape, dtype, weight_decay=weight_decay, seed=5)
    assert_deterministic(lambda: check_adamw_kernel(K, shape, dtype,
                                                    weight_decay=weight_decay, seed=5))


def test_adamw_non_contiguous_param():
    p = np.ones((6, 8), np.float32)[:, ::2]             # a strided view is updated in place
    m, v = np.zeros_like(p), np.zeros_like(p)
    K["adamw_step"](p, np.ones_like(p), m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, step=1)
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)
    np.testing.assert_allclose(m, 0.1, rtol=1e-6)


# attention -----------------------------------------------------------------------------------

@st.composite
def attention_case(draw, max_len=9):
    lead = draw(st.sampled_from([(), (1,), (2,), (2, 3)]))
    t, s = draw(st.integers(1, max_len)), draw(st.integers(1, max_len))
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    q, k, v, dy = (draw(float_arrays((*lead, n, c), np.float64, magnitudes=(1.0, 3.0),
                                     kinds=("normal", "uniform", "outliers")))
                   for n, c in ((t, d), (s, d), (s, dv), (t, dv)))
    return q, k, v, dy, draw(st.booleans()), draw(st.sampled_from([None, 0.3, -0.5, 0.0]))


def check_attention(case, dtype):
    q, k, v, dy, causal, scale = case
    # The kernel's cache keeps the row log-sum-exp; p = exp(s - lse) recomputed from it
    # carries a relative error of about |s|·eps, where the stored p of the reference has eps:
    # its backward budget (both terms) scales with the largest score (the flash trade-off).
    sc = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    max_score = abs(sc) * np.max(np.abs(q)) * np.max(np.abs(k)) * q.shape[-1]
    check_pairings("scaled_dot_product_attention_forward",
                   "scaled_dot_product_attention_backward", (q, k, v), dy, dtype,
                   fwd_kw=dict(causal=causal, scale=scale), name="attention",
                   grad_scale=backward_scale(q, k, v, dy, sc), bwd_cond=1.0 + max_score)


@settings(max_examples=6)
@given(case=attention_case(max_len=700), dtype=dtypes())
def test_attention_many_tiles(case, dtype):
    check_attention(case, dtype)


@settings(max_examples=10)
@given(case=attention_case(max_len=40), dtype=dtypes())
def test_attention_online_softmax_across_small_tiles(case, dtype):
    # tiles far smaller than the sequences: the running max/sum rescaling across key tiles
    # (which GPT-2 sizes, S <= BC, never reach) and head groups split over several passes
    from nanonorm.kernels.cpu import attention as A
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "BR", 4)
        mp.setattr(A, "BC", 5)
        mp.setattr(A, "TILE", 40)
        check_attention(case, dtype)


def test_attention_gradients_through_subnormal_probabilities():
    # scores 90 apart: the second key's float32 p is exp(-90) = 8e-40, subnormal, and dq comes
    # from it alone (2.9e-37 exact). An exp flushing it to 0 lost dq entirely (a flake of
    # HYPOTHESIS_PROFILE=dev: 3 of 4 runs drew such a case).
    q = np.array([[1.0, 0.0]])
    k = np.array([[0.0, 0.0], [-90.0 * np.sqrt(2.0), 0.0]])
    v = np.array([[1.0, 2.0], [3.0, -1.0]])
    dy = np.array([[0.5, -1.0]])
    check_attention((q, k, v, dy, False, None), np.float32)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("t,s", [(1, 1), (5, 3), (130, 700), (300, 257), (70, 1100)])
def test_attention_tiles(causal, t, s):
    # sequences not a multiple of the blocks; T > S leaves early queries without a key
    rng = np.random.default_rng(t * 1000 + s)
    q, k, v = (rng.standard_normal((2, n, 8)) for n in (t, s, s))
    dy = rng.standard_normal((2, t, 8))
    check_attention((q, k, v, dy, causal, None), np.float32)
    y, cache = K["scaled_dot_product_attention_forward"](q.astype(np.float32), k.astype(
        np.float32), v.astype(np.float32), causal=causal)
    assert cache.lse.shape == (2, t, 1) and cache.causal == causal       # O(T) per head
    if causal and t > s:
        assert np.all(y[:, :t - s] == 0) and np.all(cache.lse[:, :t - s] == -np.inf)
    assert_deterministic(lambda: K["scaled_dot_product_attention_forward"](
        q, k, v, causal=causal))
    assert_deterministic(lambda: K["scaled_dot_product_attention_backward"](dy, cache))


# threads ---------------------------------------------------------------------------------------

def _fresh_process(code, **env) -> str:
    """The stdout of `python -c code` in a fresh interpreter (NANONORM_NUM_THREADS as given)."""
    clean = {k: v for k, v in os.environ.items() if k != "NANONORM_NUM_THREADS"}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, check=True,
                          capture_output=True, text=True).stdout


# in a fresh process, what the kernels change (Numba's config and threads, the environment,
# the threading libraries loaded, Python threads) on import and at the first kernel
_IMPORT_THEN_RUN = """
import json, os, threading, numba, numba.np.ufunc.parallel as parallel
def seen():
    libs = sorted({line.split()[-1] for line in open('/proc/self/maps')
                   if any(n in line for n in ('gomp', 'omppool', 'tbb', 'workqueue'))})
    return {'layer': numba.config.THREADING_LAYER, 'env': dict(os.environ), 'libs': libs,
            'numba_started': parallel._is_initialized,
            'threads': sorted(t.name for t in threading.enumerate())}
before = seen()
import nanonorm, nanonorm.kernels.cpu, numpy as np
imported = seen()
nanonorm.kernels.cpu.gelu_forward(np.ones(1 << 20))
print(json.dumps([before, imported, seen()]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="not Linux")
def test_importing_the_kernels_changes_nothing_and_they_run_on_their_own_threads():
    before, imported, ran = json.loads(_fresh_process(_IMPORT_THEN_RUN, NANONORM_NUM_THREADS="2"))
    assert imported == before                  # no threads, libraries, config or environment
    assert ran["threads"] == sorted(before["threads"] + ["nanonorm-kernel"])   # 1 worker + us
    assert not ran["numba_started"] and ran["libs"] == before["libs"]   # Numba's layer unused
    assert [ran[k] == before[k] for k in ("layer", "env")] == [True, True]


_SAME_KERNELS = ("import hashlib, numpy as np, nanonorm.functional as F\n"
                 "x = np.random.default_rng(0).standard_normal((300, 777)).astype(np.float32)\n"
                 "y, c = F.layer_norm_forward(x, 777)\n"
                 "out = [y, F.softmax(x), F.gelu(x), F.layer_norm_backward(x, c)[0]]\n"
                 "print(hashlib.sha256(b''.join(a.tobytes() for a in out)).hexdigest())\n")


def test_what_ran_before_in_the_process_leaves_the_kernels_alone():
    # torch imported first (its libgomp), or a user's own parallel @njit loop first (Numba's
    # threads started with its defaults): the same kernels, on the same threads, same bits
    user_loop = ("from numba import njit, prange\nimport numpy as np\n"
                 "@njit(parallel=True)\ndef triad(a):\n    for i in prange(a.size): a[i] += 1.0\n"
                 "triad(np.zeros(1 << 20))\n")
    alone = _fresh_process(_SAME_KERNELS)
    assert _fresh_process(user_loop + _SAME_KERNELS) == alone
    if importlib.util.find_spec("torch"):
        assert _fresh_process("import torch\n" + _SAME_KERNELS) == alone
    assert _fresh_process(_SAME_KERNELS, NANONORM_NUM_THREADS="1") == alone   # any count


def test_the_thread_count_is_yours_to_set():
    code = "import nanonorm.kernels.cpu.pool as p; print(p.threads())"
    assert _fresh_process(code, NANONORM_NUM_THREADS="3").split() == ["3"]
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "NANONORM_NUM_THREADS": "0"})
    assert bad.returncode != 0 and "NANONORM_NUM_THREADS must be a positive integer" in bad.stderr
    info = "from nanonorm.cli import main; main(['info', '--json'])"
    assert json.loads(_fresh_process(info, NANONORM_NUM_THREADS="3"))["kernel_threads"] == {
        "threads": 3, "set_by": "NANONORM_NUM_THREADS"}


def test_a_forked_child_runs_kernels_on_threads_of_its_own():
    # (GNU OpenMP's pool did not survive fork: a child was terminated at its first kernel)
    code = ("import os, numpy as np, nanonorm.kernels.cpu as K\n"
            "K.gelu_forward(np.ones(1 << 20))\n"                  # the parent's threads start
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    y = K.gelu_forward(np.ones(1 << 20))[0]\n"
            "    os._exit(0 if abs(float(y[0]) - 0.8411920070648193) < 1e-6 else 3)\n"
            "print(os.waitpid(pid, 0)[1])")
    assert _fresh_process(code).split() == ["0"]


def test_a_failing_task_raises_in_the_caller_and_the_pool_goes_on():
    from nanonorm.kernels.cpu import pool

    def task(t):
        if t == 5:
            raise ZeroDivisionError("task 5")
    with pytest.raises(ZeroDivisionError, match="task 5"):
        pool.run(task, 8)
    done = []
    pool.run(lambda t: done.append(t), 8)
    assert sorted(done) == list(range(8))


def test_kernels_called_from_several_python_threads_at_once_give_each_its_answer():
    # one pool job at a time: a second caller waits for the first job, never mixes with it
    import concurrent.futures
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((300, 500)).astype(np.float32) for _ in range(6)]
    expected = [K["gelu_forward"](x)[0] for x in xs]
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        got = list(ex.map(lambda x: K["gelu_forward"](x)[0], xs * 3))
    for a, b in zip(got, expected * 3):
        np.testing.assert_array_equal(a, b)


def test_the_pool_holds_no_reference_to_a_finished_jobs_arrays():
    # a worker that kept its last job alive kept that job's arrays: a model's activations
    # outlived the step that made them (found by tests/test_gpt_memory.py)
    import gc
    import weakref

    from nanonorm.kernels.cpu import pool
    a = np.ones(1 << 16)
    ref = weakref.ref(a)
    pool.run(lambda task, x: x[task], max(2, pool.threads()), a)
    del a
    gc.collect()
    assert ref() is None
