"""Cross-entropy's declaration: public checks, drawn inputs, bench row."""
from __future__ import annotations

import math

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import loss
from ..testing.arrays import KINDS, random_floats


def cross_entropy_args(logits: Array, targets: Array) -> Call:
    """Mean over all positions of -log softmax(logits)[target]; a 0-d array of logits' dtype.

    A target whose logit is -inf (ruled out by the logits, e.g. masked, or a row that is all
    -inf) costs +inf. Its gradient stays finite: dlogits = (softmax - onehot)·dloss/N, with the
    softmax of an all -inf row taken as 0 (as `softmax` does), so that row's gradient is
    -onehot·dloss/N. A row holding NaN or +inf gives a NaN loss and a NaN gradient row.
    """
    xp = check.namespace(logits=logits, targets=targets)
    check.floating(xp, "logits", logits)
    check.min_ndim("logits", logits, 1, "(..., vocab)")
    check.integer(xp, "targets", targets)
    check.shape("targets", targets, logits.shape[:-1], " (logits.shape[:-1])")
    if math.prod(targets.shape) == 0:
        raise ValueError("targets must hold at least one position (the mean over none is "
                         "undefined)")
    check.index_range(xp, "targets", targets, logits.shape[-1], "class ids into logits' last dim")
    return Call(logits, (logits, targets), {})


def cross_entropy_grad_args(dloss, cache: loss.CrossEntropyCache) -> Call:
    """dlogits for an upstream gradient `dloss` of the scalar loss (1.0 for the loss itself)."""
    check.cache_type("cache", cache, loss.CrossEntropyCache)
    check.scalar_gradient("dloss", dloss, cache.logits, "logits")
    return Call(cache.logits, (dloss, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: lead (positions' shape), V, dloss, kind and scale of the logits."""
    lead = tuple(size["lead"])
    z = random_floats(rng, (*lead, size["V"]), scale=size.get("scale", 1.0),
                      kind=size.get("kind", "normal"))
    t = rng.integers(0, size["V"], lead)
    return Sample((z, t), {}, np.asarray(size.get("dloss", 1.0)))


def test_size(rng) -> dict:
    n = int(rng.integers(1, 10))
    return dict(lead=[(n,), (1, n), (n, 1)][rng.integers(3)], V=int(rng.integers(1, 71)),
                dloss=float(rng.choice([1.0, 0.25])), kind=str(rng.choice(KINDS)),
                scale=float(rng.choice([1e-3, 1.0, 30.0])))


def torch_cross_entropy(torch, z, t):
    return torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), t.reshape(-1))


SPECS = [OpSpec(
    name="cross_entropy", reference=loss, cache=(loss.CrossEntropyCache,),
    check_forward=cross_entropy_args, check_backward=cross_entropy_grad_args, inputs=inputs,
    test_size=test_size,
    # CE fwd+bwd: fwd reads logits, bwd reads them and writes dlogits -> 3·N·V·4 bytes
    bench=(BenchCase("cross_entropy_fwd_bwd", dict(lead=(1024,), V=50257, scale=2.0),
                     dict(lead=(9,), V=501, scale=2.0), "GB/s",
                     lambda s: 3 * math.prod(s["lead"]) * s["V"] * 4, backward=True),),
    torch=torch_cross_entropy,
)]
