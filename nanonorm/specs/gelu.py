"""GELU's declaration: public checks, drawn inputs, bench row."""
from __future__ import annotations

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import gelu
from ..testing.arrays import KINDS, awkward_shape, random_floats


def gelu_args(x: Array) -> Call:
    """GELU, tanh approximation (GPT-2's). gelu(+inf) = +inf and gelu(-inf) = 0 with
    gradients 1 and 0 there (its limits, as for large finite x); NaN gives NaN."""
    xp = check.namespace(x=x)
    check.floating(xp, "x", x)
    return Call(x, (x,), {})


def gelu_grad_args(dy: Array, cache: gelu.GeluCache) -> Call:
    check.cache_type("cache", cache, gelu.GeluCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, cache.x.shape, " (the shape of x)")
    return Call(dy, (dy, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: shape, kind and scale of x."""
    x = random_floats(rng, size["shape"], scale=size.get("scale", 1.0),
                      kind=size.get("kind", "normal"))
    dy = rng.standard_normal(x.shape)
    # |gelu(x)| <= |x|, and in the negative tail the float64 "exact" 0.5·x·(1 + tanh) is
    # itself 0 where a kernel's x·σ(2u) keeps a tiny value: round at the scale of |x|, |dy|
    return Sample((x,), {}, dy, out_scale=np.max(np.abs(x), initial=0.0),
                  grad_scale=np.max(np.abs(dy), initial=0.0))


def test_size(rng) -> dict:
    return dict(shape=awkward_shape(rng, 1, 3), kind=str(rng.choice(KINDS)),
                scale=float(rng.choice([1e-3, 1.0, 4.0, 30.0])))


SPECS = [OpSpec(
    name="gelu", reference=gelu, cache=(gelu.GeluCache,), check_forward=gelu_args,
    check_backward=gelu_grad_args, inputs=inputs, test_size=test_size,
    # GELU fwd on the MLP activation (B·T, 4C): read x, write y -> 2·N·4C·4 bytes
    bench=(BenchCase("gelu_fwd", dict(shape=(8192, 3072)), dict(shape=(33, 40)), "GB/s",
                     lambda s: 2 * int(np.prod(s["shape"])) * 4),),
    torch=lambda torch, x: torch.nn.functional.gelu(x, approximate="tanh"),
)]
