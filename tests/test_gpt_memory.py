"""The training step's memory paths: the fused head and loss in blocks of rows
(return_logits=False) and activation recomputation (recompute=True) give the gradients of the
plain step, and keep what they promise not to keep (measured with tracemalloc: NumPy reports its
array buffers to it)."""
import tracemalloc

import numpy as np
import pytest

import nanonorm
from nanonorm import gpt_head
from nanonorm.gpt import GPT, GPTConfig
from nanonorm.testing import check_gradients

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=13, block_size=7)
# activations dominate: (B, T, C) = (4, 64, 64) per array, V small
WIDE = GPTConfig(n_layer=3, n_head=4, n_embd=64, vocab_size=97, block_size=64)


def batch(cfg, B=3, T=6, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, cfg.vocab_size, (B, T)), rng.integers(0, cfg.vocab_size, (B, T)))


def step(cfg, dtype, *, recompute=False, return_logits=True, dloss=1.0, seed=3):
    model = GPT(cfg, seed=seed, dtype=dtype, recompute=recompute)
    idx, targets = batch(cfg)
    _, loss = model.forward(idx, targets, return_logits=return_logits)
    return loss, model.backward(dloss)


@pytest.fixture
def small_row_blocks(monkeypatch):
    """Row blocks of 5 logit rows: every batch here spans several, one of them partial."""
    monkeypatch.setattr(gpt_head, "ROW_BLOCK_BYTES", 5 * 13 * 8)


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("return_logits", [True, False])
def test_recompute_gives_the_same_loss_and_gradients_bit_for_bit(impl, dtype, return_logits):
    with nanonorm.use_impl(impl):
        loss, grads = step(TINY, dtype, return_logits=return_logits, dloss=0.7)
        loss_r, grads_r = step(TINY, dtype, recompute=True, return_logits=return_logits,
                               dloss=0.7)
    assert np.asarray(loss).tobytes() == np.asarray(loss_r).tobytes()
    assert list(grads) == list(grads_r)
    for name in grads:
        np.testing.assert_array_equal(grads_r[name], grads[name], err_msg=name)


@pytest.mark.parametrize("impl", ["reference", "numba"])
@pytest.mark.parametrize("tie", [True, False])
def test_fused_head_in_row_blocks_matches_the_plain_step(impl, tie, small_row_blocks):
    cfg = GPTConfig(**{**TINY.__dict__, "tie_weights": tie})
    with nanonorm.use_impl(impl):
        loss, grads = step(cfg, "float64", dloss=-1.5)
        loss_f, grads_f = step(cfg, "float64", return_logits=False, dloss=-1.5)
    np.testing.assert_allclose(float(loss_f), float(loss), rtol=1e-14)
    for name in grads:
        np.testing.assert_allclose(grads_f[name], grads[name], rtol=1e-12, atol=1e-15,
                                   err_msg=name)


def test_fused_recomputed_step_matches_finite_differences(small_row_blocks):
    model = GPT(TINY, seed=3, dtype="float64", recompute=True)
    params = model.parameters()
    names = list(params)
    rng = np.random.default_rng(0)
    for n in names:  # off the init's zeros and ones, so every path carries signal
        params[n] = params[n] + 0.1 * rng.standard_normal(params[n].shape)
    idx, targets = batch(TINY)

    def forward(*arrays):
        for n, a in zip(names, arrays):
            params[n] = a
        return model.forward(idx, targets, return_logits=False)[1], None

    def backward(dloss, _):
        grads = model.backward(dloss)
        return tuple(grads[n] for n in names)

    results = check_gradients(forward, backward, [params[n] for n in names], h=1e-5,
                              rtol=1e-6, atol=1e-10)
    assert len(results) == len(names)


def test_fused_head_returns_no_logits_and_the_loss_in_the_dtype():
    model = GPT(TINY, dtype="float32")
    idx, targets = batch(TINY)
    logits, loss = model.forward(idx, targets, return_logits=False)
    assert logits is None and loss.dtype == np.float32 and loss.shape == ()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(return_logits=False), ValueError, "return_logits=False needs targets"),
    (dict(return_logits="no"), TypeError, "return_logits"),
])
def test_forward_refuses_bad_return_logits(kwargs, exc, match):
    model = GPT(TINY)
    with pytest.raises(exc, match=match):
        model.forward(batch(TINY)[0], **kwargs)
    assert model._cache is None


@pytest.mark.parametrize("dloss, exc", [("1", TypeError), (True, TypeError),
                                        (np.ones(2, np.float32), ValueError)])
def test_fused_backward_refuses_a_bad_dloss_and_keeps_nothing(dloss, exc):
    model = GPT(TINY)
    model.forward(*batch(TINY), return_logits=False)
    with pytest.raises(exc, match="dloss"):
        model.backward(dloss)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_recompute_must_be_a_bool(value):
    with pytest.raises(TypeError, match="recompute"):
        GPT(TINY, recompute=value)
    model = GPT(TINY)
    with pytest.raises(TypeError, match="recompute"):
        model.recompute = value
    assert model.recompute is False


def _traced(fn):
    """(bytes still allocated after fn, peak bytes during fn), relative to before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        now, peak = tracemalloc.get_traced_memory()
        return now - before, peak - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_recompute_keeps_only_each_blocks_input(impl):
    B, T, C, L = 4, 64, WIDE.n_embd, WIDE.n_layer
    idx, targets = batch(WIDE, B, T)
    unit = B * T * C * 4                                     # one (B, T, C) float32 array
    kept = {}
    with nanonorm.use_impl(impl):
        for recompute in (False, True):
            model = GPT(WIDE, recompute=recompute)
            model.forward(idx, targets, return_logits=False)    # compile/warm, then measure
            model.drop_cache()
            kept[recompute] = _traced(
                lambda: model.forward(idx, targets, return_logits=False))[0]
            model.backward()
    # a block keeps ~16 (B, T, C) arrays for its backward; with recompute, its input only
    assert kept[False] > 12 * L * unit, kept
    assert kept[True] < 3 * L * unit, kept


def test_fused_head_never_holds_the_logits_or_their_gradient_whole(small_row_blocks):
    cfg = GPTConfig(n_layer=1, n_head=1, n_embd=4, vocab_size=4099, block_size=64)
    gpt_head.ROW_BLOCK_BYTES = 16 * 4099 * 4                # 16 rows per block
    idx, targets = batch(cfg, 4, 64)
    logits_bytes = 4 * 64 * 4099 * 4
    peaks = {}
    for return_logits in (True, False):
        model = GPT(cfg)

        def train_step():
            model.forward(idx, targets, return_logits=return_logits)
            model.backward()
        train_step()                                        # compile/warm, then measure
        peaks[return_logits] = _traced(train_step)[1]
    assert peaks[True] > 2 * logits_bytes, peaks            # logits and dlogits
    assert peaks[False] < logits_bytes / 2, peaks


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_attention_keeps_what_its_implementation_promises(impl):
    # the Numba kernel keeps the row log-sum-exp, never (T, T): its fwd+bwd peak grows
    # linearly in T (4x from T=512 to 2048; how many head groups' scratch tiles coexist
    # depends on the threads' timing, so up to 8x is allowed, against 16x for (T, T)); the
    # reference keeps p, (T, T)
    from nanonorm import functional as F
    peaks = {}
    for t in (512, 2048):
        rng = np.random.default_rng(0)
        q, k, v, dy = (rng.standard_normal((1, 2, t, 16), np.float32) for _ in range(4))

        def call():
            _, cache = F.scaled_dot_product_attention_forward(q, k, v, causal=True)
            F.scaled_dot_product_attention_backward(dy, cache)
        with nanonorm.use_impl(impl):
            call()
            peaks[t] = _traced(call)[1]
    scores = 2 * 2048 * 2048 * 4                                  # (H, T, T) float32 at T=2048
    if impl == "numba":
        assert peaks[2048] < scores / 4 and peaks[2048] < 8 * peaks[512], peaks
    else:
        assert peaks[2048] > scores and peaks[2048] > 12 * peaks[512], peaks


def test_a_forward_without_targets_keeps_no_block_activations():
    # only the logits outlive the call, and at most a block or two of activations exist at
    # once (a forward that kept every block's cache until it returned peaked at 6.1 GiB for
    # GPT-2 small at B=8, T=1024, against 1.6 GiB now)
    B, T, C, L = 4, 64, WIDE.n_embd, WIDE.n_layer
    idx, _ = batch(WIDE, B, T)
    unit, logits = B * T * C * 4, B * T * WIDE.vocab_size * 4
    model = GPT(WIDE)
    model.forward(idx)
    kept, peak = _traced(lambda: model.forward(idx))
    assert peak < 20 * unit + 2 * logits < 12 * L * unit, (peak, unit, logits)
