"""CuPy end to end: every functional op, GPT on device="cuda", AdamW, checkpoints, generation.

These run only where CuPy and a GPU are present and skip otherwise ("no GPU / CuPy not
installed"). Each compares the device result with the NumPy reference on the same inputs,
under the error budget (the reference in the same dtype sets it, float64 / long double is the
exact answer).

Without a GPU, NANONORM_E2E_LIB runs the same bodies on NumPy / device="cpu" instead:
  numpy      with the Numba kernels: checks the test logic only (seconds);
  simulator  with the CUDA kernels on numba-cuda's simulator, routed to NumPy arrays by
             patching dispatch: the whole model through the CUDA kernels (slow: minutes).
Neither says anything about a real GPU.
"""
import os

import numpy as np
import pytest

import nanonorm
import nanonorm.functional as F
from nanonorm import dispatch
from nanonorm.backend import backend_name, to_numpy
from nanonorm.dispatch import implementation_for, kernels
from nanonorm.ops.registry import KERNELS as R
from nanonorm.testing import WIDER, assert_close_budget, cast_floats

MODE = os.environ.get("NANONORM_E2E_LIB", "cupy")
LIB = "cupy" if MODE == "cupy" else "numpy"        # the array library under test
DEVICE = "cuda" if MODE == "cupy" else "cpu"
FAST = "numba" if MODE == "numpy" else "cuda"      # the implementation dispatch should pick


def _has_cupy() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def xp():
    """The device array module (cupy); skips without CuPy or without a GPU."""
    if MODE == "numpy":
        yield np
        return
    if MODE == "simulator":
        with dispatch.cuda_kernels_on_numpy():
            yield np
        return
    cupy = pytest.importorskip("cupy", reason="no GPU / CuPy not installed")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CUDA driver missing or broken: as good as no GPU
        count = 0
    if count < 1:
        pytest.skip("no GPU / CuPy not installed")
    yield cupy


def host(a):
    return None if a is None else np.asarray(to_numpy(a))


def _results(result):
    """The arrays of an op's result: out of (out, cache), or the tuple of grads."""
    if isinstance(result, tuple) and len(result) == 2 and hasattr(result[1], "_fields"):
        result = result[0]
    return list(result) if isinstance(result, tuple) else [result]


def _cases(rng):
    """op -> (host args, forward kwargs, dy): GPT-2-like widths, odd sizes on purpose."""
    n = lambda *s: rng.standard_normal(s)
    q, k, v = n(2, 3, 37, 16), n(2, 3, 37, 16), n(2, 3, 37, 16)
    logits = n(3, 37, 101) * 3
    return {
        "layer_norm": ([n(3, 91, 771), (771,), n(771), n(771)], {}, n(3, 91, 771)),
        "softmax": ([n(5, 33, 517) * 4, -1, 0.7], {}, n(5, 33, 517)),
        "log_softmax": ([n(5, 517, 33) * 4, 1, 1.0], {}, n(5, 517, 33)),
        "scaled_dot_product_attention": ([q, k, v], {"causal": True}, n(2, 3, 37, 16)),
        "gelu": ([n(7, 3001) * 4], {}, n(7, 3001)),
        "linear": ([n(3, 37, 96), n(96, 130), n(130)], {}, n(3, 37, 130)),
        "embedding": ([rng.integers(0, 50, (3, 37)), n(50, 24)], {}, n(3, 37, 24)),
        "cross_entropy": ([logits, rng.integers(0, 101, (3, 37))], {}, np.asarray(0.5)),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["layer_norm", "softmax", "log_softmax",
                                "scaled_dot_product_attention", "gelu", "linear", "embedding",
                                "cross_entropy"])
def test_functional_op_on_device(xp, op, dtype):
    args, kw, dy = _cases(np.random.default_rng(0))[op]
    fwd, bwd = f"{op}_forward", f"{op}_backward"
    dt = np.dtype(dtype)
    a, a_wide = cast_floats(args, dt), cast_floats(args, WIDER[dt])
    dev = [xp.asarray(x) if isinstance(x, np.ndarray) else x for x in a]
    expected_impl = FAST if fwd in kernels(FAST) else "reference"
    assert implementation_for(fwd, dev[0]) == expected_impl

    out, cache = getattr(F, fwd)(*dev, **kw)
    assert backend_name(out) == LIB and np.dtype(str(out.dtype)) == dt   # type/dtype in = out
    ref_out, ref_cache = R[fwd](*a, **kw)
    exact_out, exact_cache = R[fwd](*a_wide, **kw)
    assert_close_budget(out, ref_out, exact_out, name=f"{op} forward")

    grads = _results(getattr(F, bwd)(xp.asarray(dy.astype(dt)), cache))
    ref_grads = _results(R[bwd](dy.astype(dt), ref_cache))
    exact_grads = _results(R[bwd](dy.astype(WIDER[dt]), exact_cache))
    assert len(grads) == len(ref_grads)
    for i, (g, r, e) in enumerate(zip(grads, ref_grads, exact_grads)):
        assert (g is None) == (r is None)
        if g is not None:
            assert backend_name(g) == LIB
            assert_close_budget(g, r, e, name=f"{op} grad {i}")


def test_adamw_step_on_device(xp):
    rng = np.random.default_rng(1)
    p0, g = rng.standard_normal((129, 77)), rng.standard_normal((129, 77))
    hyper = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)

    def run(mod, dt, fn):
        p, m, v = (mod.asarray(a.astype(dt)) for a in (p0, np.zeros_like(p0), np.zeros_like(p0)))
        for step in (1, 2, 3):
            fn(p, mod.asarray((g * step).astype(dt)), m, v, step=step, **hyper)
        return p, m, v

    assert implementation_for("adamw_step", xp.zeros(1, xp.float32)) == FAST
    dev = run(xp, np.float32, kernels(FAST)["adamw_step"])
    ref = run(np, np.float32, R["adamw_step"])
    exact = run(np, np.float64, R["adamw_step"])
    for d, r, e, name in zip(dev, ref, exact, "pmv"):
        assert backend_name(d) == LIB
        assert_close_budget(d, r, e, name=f"adamw {name}")


# the model -----------------------------------------------------------------------------------

CONFIG = dict(n_layer=2, n_head=2, n_embd=48, vocab_size=97, block_size=32)


def _model(device, dtype="float32"):
    return nanonorm.GPT(nanonorm.GPTConfig(**CONFIG), seed=3, dtype=dtype, device=device)


def _batch(seed=4, b=3, t=29):
    rng = np.random.default_rng(seed)
    return rng.integers(0, CONFIG["vocab_size"], (b, t)), rng.integers(0, CONFIG["vocab_size"],
                                                                        (b, t))


def _forward_backward(model, idx, targets):
    logits, loss = model.forward(idx, targets)
    return logits, loss, model.backward()


def _reference(fn, *args):
    """fn(*args) with every op on the reference math (the budget's baseline)."""
    with nanonorm.use_impl("reference"):
        return fn(*args)


def test_gpt_forward_backward_on_device(xp):
    idx, targets = _batch()
    model = _model(DEVICE)
    assert all(backend_name(p) == LIB for p in model.parameters().values())
    logits, loss, grads = _forward_backward(model, xp.asarray(idx), xp.asarray(targets))
    assert backend_name(logits) == LIB and backend_name(loss) == LIB   # stays on the device
    ref = _reference(_forward_backward, _model("cpu"), idx, targets)
    exact = _reference(_forward_backward, _model("cpu", "float64"), idx, targets)
    assert_close_budget(logits, ref[0], exact[0], name="logits")
    assert_close_budget(loss, ref[1], exact[1], name="loss")
    assert grads.keys() == ref[2].keys()
    for name, g in grads.items():
        assert backend_name(g) == LIB
        assert_close_budget(g, ref[2][name], exact[2][name], name=f"grad {name}")


def test_gpt_training_steps_on_device(xp):
    # five AdamW steps on the device track five on the CPU; the loss goes down on both
    idx, targets = _batch(5)

    def train(device, mod, dtype):
        model = _model(device, dtype)
        opt = model.configure_optimizer(lr=3e-3)
        losses = []
        for _ in range(5):
            _, loss = model.forward(mod.asarray(idx), mod.asarray(targets))
            opt.step(model.backward())
            losses.append(float(host(loss)))          # outside the hot path: test only
        return losses, model.parameters()

    losses, params = train(DEVICE, xp, "float32")
    _, ref = _reference(train, "cpu", np, "float32")
    _, exact = _reference(train, "cpu", np, "float64")
    assert losses[-1] < losses[0]
    for name, p in params.items():
        assert backend_name(p) == LIB
        assert_close_budget(p, ref[name], exact[name], name=f"param {name} after 5 steps")


def test_checkpoint_loads_straight_to_device(xp, tmp_path):
    cpu = _model("cpu")
    cpu.save(tmp_path)
    model = nanonorm.GPT.from_pretrained(tmp_path, device=DEVICE)
    assert model.device == DEVICE
    for name, p in model.parameters().items():
        assert backend_name(p) == LIB
        np.testing.assert_array_equal(host(p), host(cpu.parameters()[name]))


def test_generation_on_device(xp):
    idx, _ = _batch(6, b=2, t=5)
    # float64 models: greedy argmax ties between CPU and GPU rounding are then out of reach
    dev = _model(DEVICE, "float64").generate(xp.asarray(idx), 7, top_k=1)
    cpu = _reference(lambda: _model("cpu", "float64").generate(idx, 7, top_k=1))
    assert backend_name(dev) == LIB and dev.shape == (2, 12)
    np.testing.assert_array_equal(host(dev), host(cpu))
    sampled = _model(DEVICE).generate(xp.asarray(idx), 7, temperature=0.8, top_p=0.9, seed=1)
    s = host(sampled)
    assert s.shape == (2, 12) and np.all((s >= 0) & (s < CONFIG["vocab_size"]))
    np.testing.assert_array_equal(s[:, :5], idx)


# without CuPy ----------------------------------------------------------------------------------

@pytest.mark.skipif(_has_cupy(), reason="CuPy is installed: the missing-CuPy error cannot occur")
def test_gpt_on_cuda_without_cupy_says_what_is_missing():
    with pytest.raises(RuntimeError, match="CuPy") as info:
        _model("cuda")
    assert "nanonorm[gpu]" in str(info.value)            # and how to get it
