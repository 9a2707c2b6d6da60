"""Validate, then act: AdamW, the LR schedule and generation refuse bad input, naming it, before
they change anything."""
import copy
import math

import array_api_strict
import numpy as np
import pytest

from nanonorm.generate import filter_top_k, filter_top_p, sample
from nanonorm.gpt import GPT, GPTConfig
from nanonorm.optim import AdamW, cosine_lr

NAN, INF = math.nan, math.inf


def optimizer() -> AdamW:
    """Three parameters after one step: moments and counters that a partial change would show."""
    params = {"a": np.ones((2, 3)), "b": np.ones(3), "c": np.ones(4)}
    opt = AdamW(params, lr=0.1, weight_decay=0.01, no_decay={"b"})
    opt.step({n: np.full_like(p, 0.5) for n, p in params.items()})
    return opt


def snapshot(opt: AdamW):
    return copy.deepcopy((opt.params, opt.m, opt.v, opt.steps, opt.lr, opt.betas, opt.eps,
                          opt.weight_decay, opt.no_decay))


def assert_unchanged(opt: AdamW, before) -> None:
    after = snapshot(opt)
    for old, new in zip(before[:3], after[:3]):             # params, m, v
        assert old.keys() == new.keys()
        for name in old:
            np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    assert after[3:] == before[3:]                          # counters and hyperparameters


def good(shape):
    return np.full(shape, 0.25)


# every bad gradient comes after good ones: a check made tensor by tensor would already have
# updated "a" (and advanced its counter) when it reaches the bad one
BAD_GRADIENTS = [
    ({"a": good((2, 3)), "b": good(3), "c": good(5)}, ValueError, r"'c'.*shape"),
    ({"a": good((2, 3)), "c": np.ones(4, np.float32)}, TypeError, r"'c'.*dtype"),
    ({"a": good((2, 3)), "c": np.ones(4, np.int64)}, TypeError, r"'c'.*dtype"),
    ({"a": good((2, 3)), "c": [0.1, 0.2, 0.3, 0.4]}, TypeError, r"'c'.*array"),
    ({"a": good((2, 3)), "c": array_api_strict.ones(4, dtype=array_api_strict.float64)},
     TypeError, r"'c'.*array_api_strict"),
    ({"a": good((2, 3)), "zzz": good(4)}, ValueError, "unknown parameters.*zzz"),
    ([("a", good((2, 3)))], TypeError, "dict"),
]


@pytest.mark.parametrize("grads, error, match", BAD_GRADIENTS, ids=[
    "shape", "float32", "int64", "list", "other-library", "unknown-name", "not-a-dict"])
def test_step_checks_every_gradient_before_updating_any(grads, error, match):
    opt = optimizer()
    before = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.step(grads)
    assert_unchanged(opt, before)


def valid_state():
    """A state that differs from optimizer()'s everywhere, so a partial load would show."""
    other = AdamW({"a": np.zeros((2, 3)), "b": np.zeros(3), "c": np.zeros(4)}, lr=0.5,
                  betas=(0.8, 0.9), eps=1e-6, weight_decay=0.2)
    for _ in range(3):
        other.step({"a": good((2, 3)), "b": good(3), "c": good(4)})
    return copy.deepcopy(other.state_dict())


def with_(path, value):
    def edit(state):
        *head, last = path
        target = state
        for key in head:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
        return state
    return edit


BAD_STATES = [
    (with_(("m", "c"), np.zeros(5)), ValueError, r"m\['c'\].*shape"),
    (with_(("v", "c"), np.full(4, -1.0)), ValueError, r"v\['c'\].*non-negative"),
    (with_(("v", "c"), np.full(4, NAN)), ValueError, r"v\['c'\].*finite"),
    (with_(("m", "c"), np.full(4, INF)), ValueError, r"m\['c'\].*finite"),
    (with_(("m", "c"), [0.0] * 4), TypeError, r"m\['c'\].*array"),
    (with_(("m", "c"), np.zeros(4, np.int64)), TypeError, r"m\['c'\].*floating"),
    (with_(("m", "c"), KeyError), ValueError, "'m'.*exactly the parameters"),
    (with_(("steps", "c"), -1), ValueError, r"steps\['c'\]"),
    (with_(("steps", "c"), 1.5), TypeError, r"steps\['c'\]"),
    (with_(("steps", "c"), True), TypeError, r"steps\['c'\]"),
    (with_(("steps", "c"), "3"), TypeError, r"steps\['c'\]"),
    (with_(("lr",), NAN), ValueError, "lr"),
    (with_(("lr",), INF), ValueError, "lr"),
    (with_(("lr",), -1.0), ValueError, "lr"),
    (with_(("betas",), (0.9, 1.0)), ValueError, r"betas\[1\]"),
    (with_(("betas",), (NAN, 0.9)), ValueError, r"betas\[0\]"),
    (with_(("eps",), 0.0), ValueError, "eps"),
    (with_(("eps",), NAN), ValueError, "eps"),
    (with_(("weight_decay",), -0.1), ValueError, "weight_decay"),
    (with_(("weight_decay",), NAN), ValueError, "weight_decay"),
    (with_(("no_decay",), ["b", "nope"]), ValueError, "no_decay.*nope"),
    (with_(("momentum",), 0.9), ValueError, "unknown keys.*momentum"),
]


@pytest.mark.parametrize("edit, error, match", BAD_STATES)
def test_load_state_dict_checks_everything_before_changing_anything(edit, error, match):
    opt = optimizer()
    before = snapshot(opt)
    with pytest.raises(error, match=match):
        opt.load_state_dict(edit(valid_state()))
    assert_unchanged(opt, before)


def test_load_state_dict_takes_a_valid_state_whole():
    opt, state = optimizer(), valid_state()
    opt.load_state_dict(state)
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay) == (0.5, (0.8, 0.9), 1e-6, 0.2)
    assert opt.steps == {"a": 3, "b": 3, "c": 3} and opt.no_decay == frozenset()
    for name in state["m"]:
        np.testing.assert_array_equal(opt.m[name], state["m"][name])
        np.testing.assert_array_equal(opt.v[name], state["v"][name])


@pytest.mark.parametrize("value, error", [(NAN, ValueError), (INF, ValueError),
                                          (-1e-3, ValueError), ("0.1", TypeError),
                                          (None, TypeError), (True, TypeError)])
def test_lr_rejects_nan_inf_negatives_at_construction_and_assignment(value, error):
    with pytest.raises(error, match="lr"):
        AdamW({"w": np.zeros(2)}, lr=value)
    opt = optimizer()
    with pytest.raises(error, match="lr"):
        opt.lr = value
    assert opt.lr == 0.1
    opt.lr = 0.0                                # zero is a valid (frozen) rate
    assert opt.lr == 0.0


SCHEDULE = dict(step=5, max_lr=1e-3, warmup=2, total=10, min_lr=1e-4)


@pytest.mark.parametrize("change, error, match", [
    (dict(max_lr=NAN), ValueError, "max_lr"), (dict(max_lr=INF), ValueError, "max_lr"),
    (dict(max_lr=-1e-3), ValueError, "max_lr"), (dict(min_lr=NAN), ValueError, "min_lr"),
    (dict(min_lr=-1e-5), ValueError, "min_lr"), (dict(min_lr=INF), ValueError, "min_lr"),
    (dict(min_lr=2e-3), ValueError, "min_lr.*max_lr"), (dict(warmup=-1), ValueError, "warmup"),
    (dict(warmup=11), ValueError, "warmup.*total"), (dict(total=0), ValueError, "total"),
    (dict(step=-1), ValueError, "step"), (dict(step=1.5), TypeError, "step"),
    (dict(warmup=2.0), TypeError, "warmup"), (dict(total=NAN), TypeError, "total"),
])
def test_cosine_lr_rejects_bad_rates_and_steps(change, error, match):
    kw = {**SCHEDULE, **change}
    with pytest.raises(error, match=match):
        cosine_lr(kw.pop("step"), **kw)


def test_cosine_lr_stays_within_its_rates():
    kw = {k: v for k, v in SCHEDULE.items() if k != "step"}
    lrs = [cosine_lr(s, **kw) for s in range(0, 30)]
    assert all(kw["min_lr"] <= lr <= kw["max_lr"] for lr in lrs[kw["warmup"]:])
    assert lrs[kw["total"]:] == [kw["min_lr"]] * (30 - kw["total"])


# generation -------------------------------------------------------------------------------

CFG = GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=11, block_size=6)


@pytest.fixture(scope="module")
def model():
    return GPT(CFG, seed=3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=1.5), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=True), ValueError, "max_new_tokens"),
    (dict(temperature=NAN), ValueError, "temperature"),
    (dict(temperature=INF), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature="1"), ValueError, "temperature"),
    (dict(top_k=0), ValueError, "top_k"), (dict(top_k=2.5), ValueError, "top_k"),
    (dict(top_k=True), ValueError, "top_k"),
    (dict(top_p=0.0), ValueError, "top_p"), (dict(top_p=1.5), ValueError, "top_p"),
    (dict(top_p=NAN), ValueError, "top_p"),
    (dict(seed=-1), ValueError, "seed"), (dict(seed=1.5), ValueError, "seed"),
    (dict(seed="7"), ValueError, "seed"),
    (dict(idx=np.array([[1.0, 2.0]])), TypeError, "idx"),
    (dict(idx=np.array([[True, False]])), TypeError, "idx"),
    (dict(idx=np.array([[[1, 2]]])), ValueError, "idx"),
    (dict(idx=np.array(3)), ValueError, "idx"),
    (dict(idx=np.array([[1, 11]])), ValueError, "idx"),
    (dict(idx=np.array([[-1, 2]])), ValueError, "idx"),
    (dict(idx=[[1, 2], [3]]), ValueError, "idx"),
    (dict(idx=np.zeros((1, 0), np.int64)), ValueError, "idx"),
    (dict(idx=np.arange(7)[None, :]), ValueError, "idx.*block_size"),   # longer than the window
])
def test_generate_names_each_bad_argument(model, kwargs, error, match):
    kw = dict(idx=np.array([[1, 2, 3]]), max_new_tokens=2) | kwargs
    with pytest.raises(error, match=match):
        model.generate(kw.pop("idx"), kw.pop("max_new_tokens"), **kw)


def test_generate_past_the_window_still_works(model):
    out = model.generate(np.arange(6)[None, :], 4, temperature=0)     # prompt = block_size
    assert out.shape == (1, 10) and np.array_equal(out[0, :6], np.arange(6))


def test_sampling_helpers_check_their_arguments():
    logits = np.zeros((2, 5))
    with pytest.raises(ValueError, match="top_k"):
        filter_top_k(logits, 0)
    with pytest.raises(ValueError, match="top_p"):
        filter_top_p(np.full((2, 5), 0.2), NAN)
    with pytest.raises(ValueError, match="temperature"):
        sample(logits, temperature=-1.0, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        sample(logits, rng=0)
