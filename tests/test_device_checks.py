"""No hidden host reads in a training step; value checks on device arrays raise later, safely.

A host read of a GPU array (bool(), float(), int(), a copy to NumPy) is a sync. Without a GPU
the count is taken on array_api_strict arrays placed on its non-CPU device ("device1"): the
model, the reference ops and the optimizer run there exactly as they run on CuPy, and every
way to read values out of such an array is counted. (The CUDA kernels' own wrappers are timed
for syncs on a GPU by bench/gpu_probe.py's sync probe.)
"""
import contextlib

import numpy as np
import pytest

import nanonorm
import nanonorm.functional as F
from nanonorm import GPT, GPTConfig, device_checks
from nanonorm.backend import to_numpy
from nanonorm.optim import clip_grad_norm

strict = pytest.importorskip("array_api_strict")
DEVICE = strict.Device("device1")          # stands in for a GPU: values live "elsewhere"
TINY = GPTConfig(vocab_size=37, block_size=8, n_layer=2, n_head=2, n_embd=8)
READS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__",
         "__iter__", "__dlpack__")


@pytest.fixture(autouse=True)
def no_leftover_checks(monkeypatch):
    monkeypatch.delenv(device_checks.ENV_VAR, raising=False)
    device_checks.forget()
    yield
    device_checks.forget()


@contextlib.contextmanager
def counted_reads():
    """Count every read of an array_api_strict array's values by the host."""
    cls = type(strict.ones(1))
    counts = {"n": 0, "what": []}
    saved = {name: getattr(cls, name) for name in READS}

    def counting(name, original):
        def read(self, *args, **kwargs):
            if self.device == DEVICE:
                counts["n"] += 1
                counts["what"].append(name)
            return original(self, *args, **kwargs)
        return read
    for name, original in saved.items():
        setattr(cls, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in saved.items():
            setattr(cls, name, original)


def model_on_device():
    model = GPT(TINY, seed=0, dtype="float64")
    model.xp, model._xp_dtype, model._xp_device = strict, strict.float64, DEVICE
    params = model.parameters()
    for name in params:
        params[name] = strict.asarray(params[name], device=DEVICE)
    return model


def batch(rng, bad=None):
    idx = rng.integers(0, TINY.vocab_size, (2, 6))
    targets = rng.integers(0, TINY.vocab_size, (2, 6))
    if bad is not None:
        idx[1, 3] = bad
    return idx, targets


def test_a_training_step_on_host_ids_reads_nothing_back():
    model = model_on_device()
    opt = model.configure_optimizer(lr=1e-3)
    idx, targets = batch(np.random.default_rng(0))
    with counted_reads() as reads:
        for _ in range(2):
            _, loss = model.forward(idx, targets, return_logits=False)
            grads = model.backward()
            norm = clip_grad_norm(grads, 1.0)       # the trainer's step, read back only to log
            opt.step(grads)
        _, loss = model.forward(idx, targets)          # the logits path too
        opt.step(model.backward())
    assert reads["n"] == 0, reads["what"]
    assert np.isfinite(float(loss)) and float(norm) > 0


def test_device_ids_are_checked_on_the_device_and_read_once_at_the_step():
    model = model_on_device()
    opt = model.configure_optimizer(lr=1e-3)
    idx, targets = batch(np.random.default_rng(1))
    with counted_reads() as reads:
        model.forward(strict.asarray(idx, device=DEVICE), strict.asarray(targets, device=DEVICE))
        grads = model.backward()
    assert reads["n"] == 0 and device_checks.pending() == 2      # idx and targets
    with counted_reads() as reads:
        opt.step(grads)
    assert reads["n"] == 2 and device_checks.pending() == 0      # the two flags, nothing else


def test_a_bad_device_id_raises_before_the_optimizer_changes_anything():
    model = model_on_device()
    opt = model.configure_optimizer(lr=1e-3)
    before = {n: to_numpy(p).copy() for n, p in model.parameters().items()}
    idx, targets = batch(np.random.default_rng(2), bad=TINY.vocab_size + 5)
    _, loss = model.forward(strict.asarray(idx, device=DEVICE),
                            strict.asarray(targets, device=DEVICE))   # no read: no error yet
    grads = model.backward()
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 37\).*got values in \[\d+, 42\]"):
        opt.step(grads)
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(to_numpy(p), before[name], err_msg=name)
    assert all(s == 0 for s in opt.steps.values())
    assert device_checks.pending() == 0                           # raised once, then gone


def test_bad_host_ids_still_raise_at_once():
    model = model_on_device()
    idx, targets = batch(np.random.default_rng(3), bad=-1)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 37\)"):
        model.forward(idx, targets)
    assert device_checks.pending() == 0


def test_immediate_mode_checks_device_arrays_at_once(monkeypatch):
    ids = strict.asarray(np.array([[0, 40]]), device=DEVICE)
    weight = strict.asarray(np.ones((37, 4)), device=DEVICE)
    with device_checks.immediate(), pytest.raises(ValueError, match="idx must lie in"):
        F.embedding_forward(ids, weight)
    monkeypatch.setenv(device_checks.ENV_VAR, "1")
    with pytest.raises(ValueError, match="idx must lie in"):
        F.embedding_forward(ids, weight)


def test_functional_ops_defer_and_check_pending_raises():
    ids = strict.asarray(np.array([[0, 40], [3, 2]]), device=DEVICE)
    weight = strict.asarray(np.arange(37 * 4, dtype=np.float64).reshape(37, 4), device=DEVICE)
    out = F.embedding(ids, weight)          # deferred; the bad id reads a row, never past it
    assert to_numpy(out).shape == (2, 2, 4)
    np.testing.assert_array_equal(to_numpy(out)[0, 1], to_numpy(weight)[36])
    logits = strict.asarray(np.zeros((2, 37)), device=DEVICE)
    F.cross_entropy(logits, strict.asarray(np.array([1, 99]), device=DEVICE))
    assert device_checks.pending() == 2
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 37\)"):
        nanonorm.check_pending()            # the first failure, in call order
    assert device_checks.pending() == 0
    nanonorm.check_pending()                # nothing left: a no-op


def test_trusted_ids_are_not_checked_again():
    ids = strict.asarray(np.array([[0, 1]]), device=DEVICE)
    weight = strict.asarray(np.ones((37, 4)), device=DEVICE)
    with device_checks.trusted():
        F.embedding(ids, weight)
    assert device_checks.pending() == 0
    F.embedding(ids, weight)
    assert device_checks.pending() == 1
