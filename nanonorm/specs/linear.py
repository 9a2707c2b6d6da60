"""linear's declaration: public checks and drawn inputs (BLAS everywhere: no kernel, no row)."""
from __future__ import annotations

from .. import precision
from .. import validate as check
from ..backend import Array
from ..opspec import Call, OpSpec, Sample
from ..ops import linear
from ..testing.arrays import awkward_shape, random_floats


def linear_args(x: Array, weight: Array, bias: Array | None = None) -> Call:
    """x @ weight + bias with weight (in_features, out_features), GPT-2's Conv1D layout."""
    xp = check.namespace(x=x, weight=weight, bias=bias)
    check.floating(xp, "x", x)
    check.min_ndim("x", x, 1, "(..., in_features)")
    check.floating(xp, "weight", weight)
    check.same_dtype("weight", weight, "x", x)
    if weight.ndim != 2 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"weight must have shape (in_features={x.shape[-1]}, out_features) "
                         f"to match x of shape {tuple(x.shape)}, got {tuple(weight.shape)}")
    if bias is not None:
        check.same_dtype("bias", bias, "x", x)
        check.shape("bias", bias, (weight.shape[1],), " (out_features,)")
    x_op, w_op = precision.matmul_operands(x, weight)    # the float32 matmul policy
    return Call(x, (x_op, w_op, bias), {})


def linear_grad_args(dy: Array, cache: linear.LinearCache) -> Call:
    """(dx, dweight, dbias); dbias is None where the forward had none."""
    check.cache_type("cache", cache, linear.LinearCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, (*cache.x.shape[:-1], cache.weight.shape[1]), " (..., out_features)")
    (dy_op,) = precision.matmul_operands(dy)          # the cache holds rounded x, weight
    return Call(dy, (dy_op, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: lead (dims of x before in_features), n_in, n_out, bias, kind of x."""
    lead, n_in, n_out = tuple(size["lead"]), size["n_in"], size["n_out"]
    x = random_floats(rng, (*lead, n_in), kind=size.get("kind", "normal"))
    w = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out) if size["bias"] else None
    return Sample((x, w, b), {}, rng.standard_normal((*lead, n_out)))


def test_size(rng) -> dict:
    return dict(lead=awkward_shape(rng, 0, 2), n_in=int(rng.integers(1, 10)),
                n_out=int(rng.integers(1, 10)), bias=bool(rng.integers(2)))


SPECS = [OpSpec(
    name="linear", reference=linear, cache=(linear.LinearCache,), check_forward=linear_args,
    check_backward=linear_grad_args, inputs=inputs, test_size=test_size,
    torch=lambda torch, x, w, b=None: x @ w if b is None else x @ w + b,
)]
