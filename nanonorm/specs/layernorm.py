"""LayerNorm's declaration: public checks, drawn inputs, bench rows."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import layernorm
from ..testing.arrays import KINDS, MAGNITUDES, awkward_shape, random_floats


def _normalized_shape(value, x: Array) -> tuple[int, ...]:
    dims = (value,) if isinstance(value, numbers.Integral) else value
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a tuple of ints, "
                        f"got {type(value).__name__}") from None
    if not dims or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1
                       for d in dims):
        raise ValueError(f"normalized_shape must be a non-empty tuple of positive ints, "
                         f"got {value!r}")
    dims = tuple(int(d) for d in dims)
    if len(dims) > x.ndim or tuple(x.shape[x.ndim - len(dims):]) != dims:
        raise ValueError(f"normalized_shape {dims} must equal the trailing dims of x, "
                         f"got x of shape {tuple(x.shape)}")
    return dims


def layer_norm_args(x: Array, normalized_shape, weight: Array | None = None,
                    bias: Array | None = None, eps: float = 1e-5) -> Call:
    """LayerNorm over the trailing `normalized_shape` dims: biased variance, 1/sqrt(var + eps).

    Exact at any magnitude: a constant row normalises to exactly 0 (output = bias), and a row
    spanning up to ± the largest float neither overflows nor loses its spread. A row holding
    NaN or ±inf gives NaN. No rows (a zero-size leading dim) gives an empty output and zero
    dweight/dbias. eps must be at least the dtype's smallest normal number (1.2e-38 in
    float32): smaller, it rounds toward 0 and a constant row would divide by it.
    """
    xp = check.namespace(x=x, weight=weight, bias=bias)
    check.floating(xp, "x", x)
    dims = _normalized_shape(normalized_shape, x)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            check.same_dtype(name, p, "x", x)
            check.shape(name, p, dims, " (normalized_shape)")
    eps = check.real_number("eps", eps, positive=True)
    tiny = float(xp.finfo(x.dtype).smallest_normal)
    if eps < tiny:
        raise ValueError(f"eps must be at least {tiny:.3g}, the smallest normal {x.dtype} "
                         f"number (smaller, it rounds toward 0 in x's dtype), got {eps!r}")
    return Call(x, (x, dims, weight, bias, eps), {})


def layer_norm_grad_args(dy: Array, cache: layernorm.LayerNormCache) -> Call:
    """(dx, dweight, dbias); dweight/dbias are None where the forward had none."""
    check.cache_type("cache", cache, layernorm.LayerNormCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, cache.x_shape, " (the shape of x)")
    return Call(dy, (dy, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: lead (the rows' dims), norm (normalized_shape), weight, bias (bools), kind and
    scale of x."""
    shape = tuple(size["lead"]) + tuple(size["norm"])
    x = random_floats(rng, shape, scale=size.get("scale", 1.0), kind=size.get("kind", "normal"))
    w, b = (random_floats(rng, size["norm"], scale=rng.choice(MAGNITUDES)) if size[k] else None
            for k in ("weight", "bias"))
    dy = random_floats(rng, shape, scale=rng.choice(MAGNITUDES))
    # dx = rstd·(g - mean(g) - xhat·mean(g·xhat)) cancels terms of size rstd·|dy|·|w|
    rows = x.reshape(-1, math.prod(size["norm"]))
    rstd = 1 / np.sqrt(np.var(rows, axis=1) + 1e-5) if rows.size else np.ones(1)
    wmax = 1.0 if w is None else np.max(np.abs(w))
    dymax = np.max(np.abs(dy), initial=0.0)
    return Sample((x, tuple(size["norm"]), w, b), {}, dy,
                  grad_scale=max(np.max(rstd) * wmax * dymax, dymax))


def test_size(rng) -> dict:
    shape = awkward_shape(rng, 1, 3)
    k = int(rng.integers(1, len(shape) + 1))
    return dict(lead=shape[:len(shape) - k], norm=shape[len(shape) - k:],
                weight=bool(rng.integers(2)), bias=bool(rng.integers(2)),
                kind=str(rng.choice(KINDS)), scale=float(rng.choice(MAGNITUDES)))


GPT2 = dict(lead=(8192,), norm=(768,), weight=True, bias=True)     # B·T = 8 · 1024 rows
QUICK = dict(lead=(67,), norm=(96,), weight=True, bias=True)


def _rows(s):
    return math.prod(s["lead"]) * math.prod(s["norm"])


SPECS = [OpSpec(
    name="layer_norm", reference=layernorm, cache=(layernorm.LayerNormCache,),
    check_forward=layer_norm_args, check_backward=layer_norm_grad_args, inputs=inputs,
    test_size=test_size,
    bench=(
        # LN fwd: read x, write y -> 2·N·C·4 bytes
        BenchCase("layernorm_fwd", GPT2, QUICK, "GB/s", lambda s: 2 * _rows(s) * 4),
        # LN fwd+bwd: fwd 2·N·C, bwd reads x, dy and writes dx 3·N·C -> 5·N·C·4 bytes
        BenchCase("layernorm_fwd_bwd", GPT2, QUICK, "GB/s", lambda s: 5 * _rows(s) * 4,
                  backward=True)),
    torch=lambda torch, x, dims, w, b, eps=1e-5: torch.nn.functional.layer_norm(x, dims, w, b,
                                                                              eps),
)]
