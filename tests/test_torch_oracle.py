"""Every op against PyTorch autograd in float64 (skipped without torch; CI installs it)."""
import numpy as np
import pytest

import nanonorm.functional as F
from nanonorm import use_impl

torch = pytest.importorskip("torch")
rng = np.random.default_rng(0)
RTOL = 1e-8


def grads_of(fn, *arrays, dout=None):
    ts = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(*ts)
    dout = np.ones(out.shape) if dout is None else dout
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), [t.grad.numpy() if t.grad is not None else None for t in ts]


def close(a, b):
    b = np.asarray(b)
    scale = np.max(np.abs(b[np.isfinite(b)]), initial=0.0)  # -inf entries must match exactly
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("dims", [(7,), (5, 7), (3, 5, 7)])
def test_layer_norm(dims):
    x = rng.standard_normal((3, 5, 7)) * 3 + 1
    w, b = rng.standard_normal(dims), rng.standard_normal(dims)
    dy = rng.standard_normal(x.shape)
    ref, (dx, dw, db) = grads_of(lambda x, w, b: torch.nn.functional.layer_norm(x, dims, w, b),
                                 x, w, b, dout=dy)
    with use_impl("reference"):
        y, cache = F.layer_norm_forward(x, dims, w, b)
        got = F.layer_norm_backward(dy, cache)
    close(y, ref)
    for g, r in zip(got, (dx, dw, db)):
        close(g, r)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis, temperature", [(-1, 1.0), (0, 0.5), (1, 3.0)])
def test_softmax(op, axis, temperature):
    x = rng.standard_normal((4, 5, 6)) * 4
    x[0, 0, :2] = -np.inf
    dy = rng.standard_normal(x.shape)
    torch_fn = getattr(torch, op)
    ref, (dx,) = grads_of(lambda x: torch_fn(x / temperature, dim=axis), x, dout=dy)
    with use_impl("reference"):
        y, cache = getattr(F, f"{op}_forward")(x, axis, temperature)
        got = getattr(F, f"{op}_backward")(dy, cache)
    close(y, ref)
    close(got, dx)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scale", [None, 0.7])
def test_attention(causal, scale):
    q, k, v = (rng.standard_normal((2, 3, 9, 8)) for _ in range(3))
    dy = rng.standard_normal((2, 3, 9, 8))
    ref, grads = grads_of(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=causal, scale=scale), q, k, v, dout=dy)
    with use_impl("reference"):
        y, cache = F.scaled_dot_product_attention_forward(q, k, v, causal=causal, scale=scale)
        got = F.scaled_dot_product_attention_backward(dy, cache)
    close(y, ref)
    for g, r in zip(got, grads):
        close(g, r)


def test_gelu():
    x = rng.standard_normal((5, 7)) * 4
    dy = rng.standard_normal(x.shape)
    ref, (dx,) = grads_of(lambda x: torch.nn.functional.gelu(x, approximate="tanh"), x, dout=dy)
    with use_impl("reference"):
        y, cache = F.gelu_forward(x)
        close(y, ref)
        close(F.gelu_backward(dy, cache), dx)


def test_linear():
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    dy = rng.standard_normal((2, 3, 4))
    ref, grads = grads_of(lambda x, w, b: x @ w + b, x, w, b, dout=dy)
    with use_impl("reference"):
        y, cache = F.linear_forward(x, w, b)
        got = F.linear_backward(dy, cache)
    close(y, ref)
    for g, r in zip(got, grads):
        close(g, r)


def test_embedding():
    idx, w = rng.integers(0, 6, (3, 8)), rng.standard_normal((6, 4))
    dy = rng.standard_normal((3, 8, 4))
    wt = torch.tensor(w, requires_grad=True)
    out = torch.nn.functional.embedding(torch.tensor(idx), wt)
    out.backward(torch.tensor(dy))
    with use_impl("reference"):
        y, cache = F.embedding_forward(idx, w)
        close(y, out.detach().numpy())
        close(F.embedding_backward(dy, cache), wt.grad.numpy())


def test_cross_entropy():
    logits, targets = rng.standard_normal((3, 4, 11)) * 5, rng.integers(0, 11, (3, 4))
    lt = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(lt.reshape(-1, 11), torch.tensor(targets).reshape(-1))
    loss.backward(torch.tensor(2.5, dtype=torch.float64))
    with use_impl("reference"):
        got, cache = F.cross_entropy_forward(logits, targets)
        close(got, loss.detach().numpy())
        close(F.cross_entropy_backward(2.5, cache), lt.grad.numpy())
