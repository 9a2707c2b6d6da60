"""AdamW against torch.optim.AdamW, clipping against torch's, the LR schedule, state resume."""
import copy

import numpy as np
import pytest

from nanonorm.ops.adamw import adamw_step
from nanonorm.optim import AdamW, clip_grad_norm, cosine_lr


def problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((5, 3)).astype(dtype),
              "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(6)]
    return params, grads


@pytest.mark.parametrize("wd, no_decay", [(0.0, ()), (0.1, ()), (0.1, ("b",))])
def test_adamw_matches_torch(wd, no_decay):
    torch = pytest.importorskip("torch")
    params, grads = problem()
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    groups = [{"params": [tp[k]], "weight_decay": 0.0 if k in no_decay else wd} for k in tp]
    ref = torch.optim.AdamW(groups, lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    opt = AdamW(params, lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd, no_decay=no_decay)
    live = params["w"]
    for i, g in enumerate(grads):
        lr = 3e-2 * (0.9 ** i)          # an LR changed between steps is honoured
        opt.lr = lr
        for group in ref.param_groups:
            group["lr"] = lr
        for k, t in tp.items():
            t.grad = torch.from_numpy(g[k].copy())
        ref.step()
        opt.step(g)
        for k in params:
            np.testing.assert_allclose(params[k], tp[k].detach().numpy(), rtol=1e-12, atol=1e-14)
    assert params["w"] is live          # updated in place


def test_adamw_float32_stays_float32_and_moves_against_gradient():
    p = {"w": np.ones(4, np.float32)}
    opt = AdamW(p, lr=0.1, weight_decay=0.0)
    opt.step({"w": np.array([1, -1, 2, 0], np.float32)})
    assert p["w"].dtype == np.float32
    # the first bias-corrected step moves every coordinate by ~lr against the gradient's sign
    np.testing.assert_allclose(p["w"], [0.9, 1.1, 0.9, 1.0], rtol=1e-5)


def test_reference_kernel_is_registered_and_dispatched():
    from nanonorm.dispatch import kernels, resolve
    assert kernels("reference")["adamw_step"] is adamw_step
    fn = resolve("adamw_step", np.zeros(2))
    p, m, v = np.ones(2), np.zeros(2), np.zeros(2)
    fn(p, np.ones(2), m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)


def test_state_dict_resume_equals_uninterrupted():
    params, grads = problem(1)
    full = {k: v.copy() for k, v in params.items()}
    a = AdamW(full, lr=1e-2)
    for g in grads:
        a.step(g)
    half = {k: v.copy() for k, v in params.items()}
    b = AdamW(half, lr=1e-2)
    for g in grads[:3]:
        b.step(g)
    state = copy.deepcopy(b.state_dict())
    c = AdamW({k: v.copy() for k, v in half.items()}, lr=5.0, weight_decay=0.5)
    c.load_state_dict(state)
    assert c.lr == 1e-2 and c.weight_decay == 0.01 and c.steps == {"w": 3, "b": 3}
    for g in grads[3:]:
        c.step(g)
    for k in full:
        np.testing.assert_array_equal(c.params[k], full[k])
    with pytest.raises(ValueError, match="m"):
        c.load_state_dict({**state, "m": {"w": state["m"]["w"]}})


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    _, grads = problem(2)
    g = grads[0]
    tg = [torch.tensor(v.copy(), requires_grad=True) for v in g.values()]
    for t, v in zip(tg, g.values()):
        t.grad = torch.from_numpy(v.copy())
    ref = torch.nn.utils.clip_grad_norm_(tg, 0.5)
    total = clip_grad_norm(g, 0.5)
    np.testing.assert_allclose(total, ref.item(), rtol=1e-12)
    for t, v in zip(tg, g.values()):
        np.testing.assert_allclose(v, t.grad.numpy(), rtol=1e-12)
    small = {"x": np.array([0.1, 0.2])}
    clip_grad_norm(small, 10.0)                     # below max_norm: unchanged (coef clamped)
    np.testing.assert_allclose(small["x"], [0.1, 0.2], rtol=1e-6)


def test_cosine_lr():
    kw = dict(max_lr=1.0, warmup=10, total=110, min_lr=0.1)
    assert cosine_lr(0, **kw) == pytest.approx(0.1)
    assert cosine_lr(9, **kw) == pytest.approx(1.0)
    assert cosine_lr(10, **kw) == pytest.approx(1.0)
    assert cosine_lr(60, **kw) == pytest.approx(0.55)
    assert cosine_lr(110, **kw) == pytest.approx(0.1) and cosine_lr(500, **kw) == 0.1
    lrs = [cosine_lr(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_validation():
    p = {"w": np.zeros(2)}
    with pytest.raises(ValueError, match="lr"):
        AdamW(p, lr=-1.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="no_decay"):
        AdamW(p, no_decay={"nope"})
    with pytest.raises(ValueError, match="unknown parameters"):
        AdamW(p).step({"x": np.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        AdamW(p).step({"w": np.zeros(3)})
