"""GPT forward/backward: whole-model gradients against finite differences, init, validation."""
import math

import numpy as np
import pytest

from nanonorm.gpt import GPT, GPTConfig
from nanonorm.testing import check_gradients

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=13, block_size=7)


def batch(cfg, B=2, T=5, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, cfg.vocab_size, (B, T)), rng.integers(0, cfg.vocab_size, (B, T)))


@pytest.mark.parametrize("tie", [True, False])
def test_whole_model_gradient_matches_finite_differences(tie):
    cfg = GPTConfig(**{**TINY.__dict__, "tie_weights": tie})
    model = GPT(cfg, seed=3, dtype="float64")
    params = model.parameters()
    names = list(params)
    rng = np.random.default_rng(0)
    for n in names:  # move off the init's zeros/ones so every path carries signal
        params[n] = params[n] + 0.1 * rng.standard_normal(params[n].shape)
    idx, targets = batch(cfg)

    def forward(*arrays):
        for n, a in zip(names, arrays):
            params[n] = a
        _, loss = model.forward(idx, targets)
        return loss, None

    def backward(dloss, _):
        grads = model.backward(dloss)
        assert list(grads) == names
        return tuple(grads[n] for n in names)

    results = check_gradients(forward, backward, [params[n] for n in names], h=1e-5,
                              rtol=1e-6, atol=1e-10)
    assert len(results) == len(names)   # every parameter tensor was checked


def test_tied_embedding_gets_both_gradients():
    model = GPT(TINY, seed=0, dtype="float64")
    idx, targets = batch(TINY)
    model.forward(idx, targets)
    g = model.backward()["transformer.wte.weight"]
    # rows of ids that never appear in idx still get the unembedding's gradient
    unused = sorted(set(range(TINY.vocab_size)) - set(idx.ravel().tolist()))
    assert unused and np.all(np.abs(g[unused]).sum(axis=1) > 0)


def test_forward_shapes_dtypes_and_loss_at_init():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=50, block_size=8)
    for dtype in ("float32", "float64"):
        model = GPT(cfg, dtype=dtype)
        idx, targets = batch(cfg, B=3, T=8)
        logits, loss = model.forward(idx, targets)
        assert logits.shape == (3, 8, 50) and logits.dtype == np.dtype(dtype)
        assert loss.shape == () and loss.dtype == np.dtype(dtype)
        # small init: the predictions are near uniform
        assert abs(float(loss) - math.log(50)) < 0.1
        assert model.forward(idx)[1] is None


def test_causality():
    model = GPT(TINY, seed=1)
    idx, _ = batch(TINY, T=7)
    changed = idx.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % TINY.vocab_size
    a, b = model.forward(idx)[0], model.forward(changed)[0]
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert not np.allclose(a[:, 4:], b[:, 4:])


def test_init_statistics_and_seed():
    cfg = GPTConfig(n_layer=4, n_head=2, n_embd=64, vocab_size=300, block_size=32)
    p = GPT(cfg, seed=5).parameters()
    assert abs(p["transformer.wte.weight"].std() - 0.02) < 0.001
    assert abs(p["transformer.h.1.mlp.c_proj.weight"].std() - 0.02 / math.sqrt(8)) < 0.0005
    assert abs(p["transformer.h.1.attn.c_proj.weight"].std() - 0.02 / math.sqrt(8)) < 0.001
    assert np.all(p["transformer.h.0.ln_1.weight"] == 1)
    assert np.all(p["transformer.h.0.attn.c_attn.bias"] == 0)
    q = GPT(cfg, seed=5, dtype="float64").parameters()
    for n in p:  # same seed -> same numbers whatever the dtype (drawn in float64 on the host)
        np.testing.assert_array_equal(p[n], q[n].astype(np.float32))
    r = GPT(cfg, seed=6).parameters()
    assert not np.array_equal(p["transformer.wte.weight"], r["transformer.wte.weight"])


def test_state_dict_round_trip_and_validation():
    a, b = GPT(TINY, seed=0), GPT(TINY, seed=1)
    live = b.parameters()["transformer.wte.weight"]
    b.load_state_dict(a.state_dict())
    assert b.parameters()["transformer.wte.weight"] is live   # copied in place
    idx, _ = batch(TINY)
    np.testing.assert_array_equal(a.forward(idx)[0], b.forward(idx)[0])
    c = GPT(TINY, seed=2)
    before = {k: v.copy() for k, v in c.state_dict().items()}
    bad = dict(a.state_dict())
    bad["transformer.ln_f.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="transformer.ln_f.bias"):
        c.load_state_dict(bad)
    del bad["transformer.ln_f.bias"]
    with pytest.raises(ValueError, match="missing.*transformer.ln_f.bias"):
        c.load_state_dict(bad)
    for k, v in c.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("idx, exc, match", [
    (np.zeros((1, 3)), TypeError, "idx must be an integer"),
    (np.zeros((1, 8), np.int64), ValueError, "block_size"),
    (np.full((1, 3), 13), ValueError, r"idx must lie in \[0, 13\)"),
    (np.zeros(3, np.int64), ValueError, r"\(batch, positions\)"),
    ("abc", TypeError, "idx must be an array"),
])
def test_forward_validation(idx, exc, match):
    with pytest.raises(exc, match=match):
        GPT(TINY).forward(idx)


def test_constructor_validation():
    with pytest.raises(ValueError, match="dtype"):
        GPT(TINY, dtype="float16")
    with pytest.raises(ValueError, match="device"):
        GPT(TINY, device="tpu")
    with pytest.raises(TypeError, match="config"):
        GPT("gpt2")
    with pytest.raises(ValueError, match="targets"):
        GPT(TINY).forward(np.zeros((1, 3), np.int64), np.zeros((1, 4), np.int64))
    with pytest.raises(RuntimeError, match="forward"):
        GPT(TINY).backward()


def test_model_runs_on_the_array_api_standard_alone():
    # the model itself may only call the Array API standard (what CuPy needs, checked here
    # without a GPU): run it on array_api_strict arrays and compare with NumPy.
    strict = pytest.importorskip("array_api_strict")
    from nanonorm.backend import to_numpy
    model = GPT(TINY, seed=0, dtype="float64")
    idx, targets = batch(TINY)
    ref_logits, ref_loss = model.forward(idx, targets)
    ref_grads = model.backward()
    greedy = model.generate(idx[:, :2], 6, temperature=0)
    sampled = model.generate(idx[:, :2], 6, top_k=5, top_p=0.9, seed=1)
    model.xp, model._xp_dtype = strict, strict.float64
    params = model.parameters()
    for name in params:
        params[name] = strict.asarray(params[name])
    logits, loss = model.forward(strict.asarray(idx), strict.asarray(targets))
    grads = model.backward()
    np.testing.assert_allclose(to_numpy(logits), ref_logits, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_numpy(loss), ref_loss, rtol=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(to_numpy(g), ref_grads[name], rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(to_numpy(model.generate(strict.asarray(idx[:, :2]), 6,
                                                          temperature=0)), greedy)
    np.testing.assert_array_equal(to_numpy(model.generate(idx[:, :2], 6, top_k=5, top_p=0.9,
                                                          seed=1)), sampled)


def test_cuda_without_cupy_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="device='cuda'.*CuPy"):
        GPT(TINY, device="cuda")


def test_public_names():
    import nanonorm
    assert nanonorm.GPT is GPT and nanonorm.GPTConfig is GPTConfig
    assert nanonorm.optim.AdamW is not None
