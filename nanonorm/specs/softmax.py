"""softmax's and log_softmax's declarations: public checks, drawn inputs, bench rows."""
from __future__ import annotations

import math

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import softmax
from ..testing.arrays import KINDS, MAGNITUDES, awkward_shape, random_floats


def softmax_args(x: Array, axis: int = -1, temperature: float = 1.0) -> Call:
    """softmax(x / temperature) along `axis`.

    Any positive temperature works at any logit magnitude: the row is shifted by its max
    before dividing, so a tiny temperature gives the argmax (ties share it) and never NaN.
    A row that is all -inf gives zeros (and a zero gradient); a row holding NaN or +inf gives
    NaN; an empty axis gives an empty result.
    """
    xp = check.namespace(x=x)
    check.floating(xp, "x", x)
    return Call(x, (x, check.axis("axis", axis, x.ndim),
                    check.real_number("temperature", temperature, positive=True)), {})


def log_softmax_args(x: Array, axis: int = -1, temperature: float = 1.0) -> Call:
    """log(softmax(x / temperature)) along `axis`, formed as (x - max)/T - log Σexp (exact to
    rounding at large logits). A row that is all -inf gives -inf; a row holding NaN or +inf
    gives NaN; an empty axis gives an empty result; log-probabilities below the dtype's range
    (a tiny temperature) are -inf."""
    return softmax_args(x, axis, temperature)


def _grad_args(what: str):
    def grad_args(dy: Array, cache: softmax.SoftmaxCache) -> Call:
        check.cache_type("cache", cache, softmax.SoftmaxCache)
        check.gradient("dy", dy, cache.out, what)
        check.shape("dy", dy, cache.out.shape, " (the shape of x)")
        return Call(dy, (dy, cache), {})
    return grad_args


def inputs(rng, size: dict) -> Sample:
    """size: shape, axis, temperature, kind and scale of x."""
    shape, axis, t = tuple(size["shape"]), size.get("axis", -1), size.get("temperature", 1.0)
    x = random_floats(rng, shape, scale=size.get("scale", 1.0), kind=size.get("kind", "normal"))
    dy = random_floats(rng, shape, scale=rng.choice(MAGNITUDES))
    # z = x / T and z - max round at |x| / T: the outputs inherit a relative (p) or absolute
    # (log p) error of eps·|z|, and the backward, through p, the same times |Σ dy| / T
    cond = 1.0 + np.max(np.abs(x), initial=0.0) / t
    dy_sum = np.max(np.sum(np.abs(dy), axis=axis), initial=0.0) / t
    return Sample((x, axis, t), {}, dy, out_scale=cond, grad_scale=cond * max(dy_sum, 1e-300))


def test_size(rng) -> dict:
    shape = awkward_shape(rng, 1, 3)
    return dict(shape=shape, axis=int(rng.integers(-len(shape), len(shape))),
                temperature=float(rng.choice([1.0, 0.5, 3.0])), kind=str(rng.choice(KINDS)),
                scale=float(rng.choice([1e-3, 1.0, 30.0])))


# attention scores of GPT-2 small: B·H = 4·12 rows of (T, T) = (1024, 1024)
SCORES = dict(shape=(48, 1024, 1024), scale=3.0)
QUICK = dict(shape=(3, 17, 33), scale=3.0)


def _torch_softmax(log: bool):
    def peer(torch, x, axis=-1, temperature=1.0):
        return (torch.log_softmax if log else torch.softmax)(x / temperature, axis)
    return peer


SPECS = [
    OpSpec(name="softmax", reference=softmax, cache=(softmax.SoftmaxCache,),
           check_forward=softmax_args, check_backward=_grad_args("the softmax output"),
           inputs=inputs, test_size=test_size,
           # softmax fwd: read x, write y -> 2·N·C·4 bytes
           bench=(BenchCase("softmax_fwd", SCORES, QUICK, "GB/s",
                            lambda s: 2 * math.prod(s["shape"]) * 4),),
           torch=_torch_softmax(False)),
    OpSpec(name="log_softmax", reference=softmax, cache=(softmax.SoftmaxCache,),
           check_forward=log_softmax_args, check_backward=_grad_args("the log_softmax output"),
           inputs=inputs, test_size=test_size, torch=_torch_softmax(True)),
]
