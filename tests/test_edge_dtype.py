"""dtype in = dtype out, on every op and implementation; every other float dtype is refused.

float32 and float64 are what nanonorm computes in. float16, bfloat16 and long double are
refused with a TypeError at the public boundary (and by the kernels themselves, so a direct
kernel call cannot quietly compute in float64 either). Also: no op modifies or aliases what
the caller passed in.
"""
from __future__ import annotations

import numpy as np
import pytest

import nanonorm.functional as F
from nanonorm.kernels.cpu import KERNELS as NUMBA
from nanonorm.ops.registry import KERNELS as REFERENCE

from test_edge_numerics import dtypes, impls, table

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 5))


def cases(dtype):
    """op -> (forward args, forward kwargs, dy) for every op with a forward/backward pair."""
    a = lambda *shape: rng.standard_normal(shape).astype(dtype)   # noqa: E731
    return {
        "layer_norm": ((a(2, 3, 5), (5,), a(5), a(5), 1e-5), {}, a(2, 3, 5)),
        "softmax": ((a(2, 3, 5), -1, 0.7), {}, a(2, 3, 5)),
        "log_softmax": ((a(2, 3, 5), 1, 2.0), {}, a(2, 3, 5)),
        "scaled_dot_product_attention": ((a(2, 3, 4), a(2, 5, 4), a(2, 5, 6)),
                                         {"causal": True, "scale": 0.5}, a(2, 3, 6)),
        "gelu": ((a(2, 3, 5),), {}, a(2, 3, 5)),
        "cross_entropy": ((a(2, 3, 7), rng.integers(0, 7, (2, 3))), {}, 0.5),
        "linear": ((a(2, 3, 5), a(5, 4), a(4)), {}, a(2, 3, 4)),
        "embedding": ((rng.integers(0, 6, (2, 3)), a(6, 5)), {}, a(2, 3, 5)),
    }


@impls
@dtypes
@pytest.mark.parametrize("op", sorted(cases(np.float64)))
def test_every_op_returns_the_dtype_it_was_given(impl, dtype, op):
    t = table(impl)
    if f"{op}_forward" not in t:
        pytest.skip(f"{impl} has no {op} kernel: dispatch runs the reference for it")
    args, kw, dy = cases(dtype)[op]
    out, cache = t[f"{op}_forward"](*args, **kw)
    assert np.asarray(out).dtype == dtype
    grads = t[f"{op}_backward"](dy, cache)
    for g in grads if isinstance(grads, tuple) else (grads,):
        assert g is None or np.asarray(g).dtype == dtype


@pytest.mark.parametrize("impl", ["reference", "numba", "cuda"])
@dtypes
def test_adamw_step_keeps_the_dtype_of_its_state(impl, dtype):
    if impl == "cuda":
        table(impl)                                   # skips where the kernels cannot run
        from nanonorm.kernels.cuda import KERNELS as kernels
    else:
        kernels = {"reference": REFERENCE, "numba": NUMBA}[impl]
    p, g = rng.standard_normal(37).astype(dtype), rng.standard_normal(37).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    kernels["adamw_step"](p, g, m, v, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8,
                          weight_decay=0.1, step=1)
    assert p.dtype == m.dtype == v.dtype == dtype


# refused dtypes ----------------------------------------------------------------------------

def public_calls(x, ints):
    """(name of the float argument, call) for every public op, x the float array to refuse."""
    return [
        ("x", lambda: F.layer_norm(x, (5,))),
        ("x", lambda: F.softmax(x)),
        ("x", lambda: F.log_softmax(x, axis=0)),
        ("q", lambda: F.scaled_dot_product_attention(x, x, x)),
        ("x", lambda: F.gelu(x)),
        ("x", lambda: F.linear(x, x[0, :2].T)),
        ("weight", lambda: F.embedding(ints, x[0])),
        ("logits", lambda: F.cross_entropy(x, ints)),
    ]


def _refused(name, call):
    with pytest.raises(TypeError) as info:
        call()
    message = str(info.value)
    assert name in message and "float32" in message and "float64" in message, message
    assert "not support" in message, message


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble], ids=["float16", "longdouble"])
def test_the_public_ops_refuse_other_float_dtypes_by_name(dtype):
    # (array_api_strict has neither: the standard's floats are float32 and float64)
    for name, call in public_calls(X.astype(dtype), np.zeros((2, 3), np.int64)):
        _refused(name, call)


def test_the_public_ops_refuse_torch_bfloat16():
    torch = pytest.importorskip("torch")
    x = torch.ones((2, 3, 5), dtype=torch.bfloat16)
    for name, call in public_calls(x, torch.zeros((2, 3), dtype=torch.int64)):
        _refused(name, call)


def test_a_backward_refuses_a_float16_gradient():
    y, cache = F.gelu_forward(X)
    with pytest.raises(TypeError, match="dy"):
        F.gelu_backward(np.ones_like(X, dtype=np.float16), cache)


@pytest.mark.parametrize("impl", ["numba", "cuda"])
@pytest.mark.parametrize("op", ["layer_norm", "softmax", "scaled_dot_product_attention", "gelu",
                                "cross_entropy"])
def test_kernels_called_directly_refuse_float16(impl, op):
    # a direct kernel call bypasses the public checks: it must not compute in float64 and
    # hand back float64 (what every Numba op did for float16 input)
    args, kw, _ = cases(np.float16)[op]
    with pytest.raises(TypeError, match="float16"):
        table(impl)[f"{op}_forward"](*args, **kw)


# inputs are never modified or aliased ------------------------------------------------------

@pytest.mark.parametrize("impl", ["reference", "numba", "cuda"])
@pytest.mark.parametrize("op", sorted(cases(np.float64)))
def test_no_op_modifies_or_aliases_its_inputs(impl, op):
    t = table(impl)
    if f"{op}_forward" not in t:
        pytest.skip(f"{impl} has no {op} kernel: dispatch runs the reference for it")
    args, kw, dy = cases(np.float32)[op]
    inputs = [a for a in (*args, dy) if isinstance(a, np.ndarray)]
    before = [a.copy() for a in inputs]
    out, cache = t[f"{op}_forward"](*args, **kw)
    grads = t[f"{op}_backward"](dy, cache)
    results = [np.asarray(out)] + [g for g in (grads if isinstance(grads, tuple) else (grads,))
                                   if g is not None]
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)
        for r in results:
            assert not np.shares_memory(r, a), f"{op}: a result shares memory with an input"

