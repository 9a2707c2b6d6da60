"""bias_gelu's declaration: public checks, drawn inputs, bench row."""
from __future__ import annotations

import math

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import bias_gelu
from ..testing.arrays import KINDS, random_floats


def bias_gelu_args(x: Array, bias: Array) -> Call:
    """gelu(x + bias) (tanh GELU, GPT-2's) with bias (C,) added along x's last dim C; one pass
    where linear's bias and gelu take two. Gradients (dx, dbias); edges as gelu's."""
    xp = check.namespace(x=x, bias=bias)
    check.floating(xp, "x", x)
    check.min_ndim("x", x, 1, "(..., features)")
    check.floating(xp, "bias", bias)
    check.same_dtype("bias", bias, "x", x)
    check.shape("bias", bias, (x.shape[-1],), " (x's last dim)")
    return Call(x, (x, bias), {})


def bias_gelu_grad_args(dy: Array, cache: bias_gelu.BiasGeluCache) -> Call:
    check.cache_type("cache", cache, bias_gelu.BiasGeluCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, cache.x.shape, " (the shape of x)")
    return Call(dy, (dy, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: rows, C, kind and scale of x."""
    scale = size.get("scale", 1.0)
    x = random_floats(rng, (size["rows"], size["C"]), scale=scale, kind=size.get("kind", "normal"))
    bias = rng.standard_normal(size["C"]) * scale
    dy = rng.standard_normal(x.shape)
    # as gelu's: round at the scale of the pre-activation and of dy
    return Sample((x, bias), {}, dy, out_scale=np.max(np.abs(x + bias), initial=0.0),
                  grad_scale=np.max(np.abs(dy), initial=0.0))


def test_size(rng) -> dict:
    return dict(rows=int(rng.integers(1, 40)), C=int(rng.integers(1, 40)),
                kind=str(rng.choice(KINDS)), scale=float(rng.choice([1e-3, 1.0, 4.0, 30.0])))


GPT2 = dict(rows=8192, C=3072)
QUICK = dict(rows=33, C=40)

SPECS = [OpSpec(
    name="bias_gelu", reference=bias_gelu, cache=(bias_gelu.BiasGeluCache,),
    check_forward=bias_gelu_args, check_backward=bias_gelu_grad_args, inputs=inputs,
    test_size=test_size,
    # fwd: read x, write y; bwd: read dy, x, write dx (bias and dbias: C each)
    #   -> 5·N·C·itemsize bytes for fwd+bwd (unfused: 8 passes)
    bench=(BenchCase("bias_gelu_fwd_bwd", GPT2, QUICK, "GB/s",
                     lambda s: 5 * math.prod((s["rows"], s["C"])) * 4, backward=True),),
    torch=lambda torch, x, bias: torch.nn.functional.gelu(x + bias, approximate="tanh"),
)]
