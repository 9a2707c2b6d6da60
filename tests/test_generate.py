"""Generation: KV cache == full recompute, greedy determinism, seeded sampling, the filters."""
import numpy as np
import pytest

from nanonorm.generate import filter_top_k, filter_top_p, sample
from nanonorm.gpt import GPT, GPTConfig

CFG = GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=23, block_size=8)


@pytest.fixture(scope="module")
def model():
    return GPT(CFG, seed=7, dtype="float64")


def test_kv_cache_logits_equal_full_recompute(model):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 23, (3, 8))
    logits, kv = model.forward_kv(ids[:, :3])           # prefill with 3 positions
    np.testing.assert_allclose(logits, model.forward(ids[:, :3])[0][:, -1], rtol=1e-12, atol=1e-13)
    for t in range(3, 8):                               # then one position at a time
        logits, kv = model.forward_kv(ids[:, t:t + 1], kv)
        full = model.forward(ids[:, :t + 1])[0][:, -1]
        np.testing.assert_allclose(logits, full, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="block_size"):
        model.forward_kv(ids[:, :1], kv)


def naive_greedy(model, ids, n):
    for _ in range(n):      # full recompute on the cropped window every step
        logits = model.forward(ids[:, -CFG.block_size:])[0][:, -1]
        ids = np.concatenate([ids, np.argmax(logits, axis=-1)[:, None]], axis=1)
    return ids


def test_greedy_equals_naive_loop_past_block_size(model):
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    out = model.generate(prompt, 12, temperature=0)     # 15 > block_size 8: the window slides
    np.testing.assert_array_equal(out, naive_greedy(model, prompt, 12))
    np.testing.assert_array_equal(out, model.generate(prompt, 12, temperature=0, seed=99))
    assert out.shape == (2, 15) and np.array_equal(out[:, :3], prompt)


def test_one_dimensional_prompt_and_top_k_one_is_greedy(model):
    greedy = model.generate([5, 6], 6, temperature=0)
    assert greedy.shape == (8,)
    np.testing.assert_array_equal(model.generate([5, 6], 6, top_k=1, seed=3), greedy)
    np.testing.assert_array_equal(model.generate([5, 6], 6, top_p=1e-9, seed=3), greedy)
    np.testing.assert_array_equal(model.generate([5, 6], 0), [5, 6])


def test_seeded_sampling_is_reproducible(model):
    a = model.generate([[1]], 20, temperature=1.5, seed=11)
    np.testing.assert_array_equal(a, model.generate([[1]], 20, temperature=1.5, seed=11))
    assert not np.array_equal(a, model.generate([[1]], 20, temperature=1.5, seed=12))


def test_sample_follows_the_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 40000))
    rng = np.random.default_rng(0)
    freq = np.bincount(sample(logits, rng=rng), minlength=4) / 40000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.01)
    freq = np.bincount(sample(logits, top_k=2, rng=rng), minlength=4) / 40000
    np.testing.assert_allclose(freq, [0.625, 0.375, 0, 0], atol=0.01)
    freq = np.bincount(sample(logits, top_p=0.9, rng=rng), minlength=4) / 40000
    np.testing.assert_allclose(freq, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], atol=0.01)
    sharp = np.bincount(sample(logits, temperature=0.2, rng=rng), minlength=4) / 40000
    assert sharp[0] > 0.9


def test_filters():
    x = np.array([[3.0, 1.0, 2.0, 0.0]])
    np.testing.assert_array_equal(filter_top_k(x, 2), [[3.0, -np.inf, 2.0, -np.inf]])
    p = np.array([[0.125, 0.5, 0.375], [0.25, 0.25, 0.5]])   # exact in binary
    np.testing.assert_allclose(filter_top_p(p, 0.5), [[0, 1, 0], [0, 0, 1]])   # 0.5 reaches 0.5
    np.testing.assert_allclose(filter_top_p(p, 0.51), [[0, 4 / 7, 3 / 7], [0.25, 0.25, 0.5]])
    # (row 2: the nucleus needs one 0.25; its tie is kept too)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(temperature=-0.5), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p"),
])
def test_validation(model, kwargs, match):
    args = dict(max_new_tokens=2) | kwargs
    with pytest.raises(ValueError, match=match):
        model.generate([[1]], args.pop("max_new_tokens"), **args)
