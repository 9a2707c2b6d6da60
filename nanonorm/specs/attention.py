"""Scaled dot-product attention's declaration: public checks, drawn inputs, bench rows."""
from __future__ import annotations

import math

import numpy as np

from .. import validate as check
from ..backend import Array
from ..opspec import BenchCase, Call, OpSpec, Sample
from ..ops import attention
from ..testing.arrays import random_floats


def attention_args(q: Array, k: Array, v: Array, *, causal: bool = False,
                   scale: float | None = None) -> Call:
    """softmax(q kᵀ · scale) v with q (..., T, d), k (..., S, d), v (..., S, dv).

    scale defaults to 1/sqrt(d). `causal` lets query i see keys j <= i + S - T (torch's
    is_causal when T == S). A query that sees no key outputs zeros (and gets a zero dq):
    every query when there are no keys (S = 0), the first T - S when causal and T > S.
    T = 0 queries, dv = 0 or a zero-size batch give empty outputs; d = 0 features is refused
    (ValueError: q·k is empty, and the default scale 1/sqrt(d) undefined).
    """
    xp = check.namespace(q=q, k=k, v=v)
    for name, a in (("q", q), ("k", k), ("v", v)):
        check.floating(xp, name, a)
        check.min_ndim(name, a, 2, "(..., positions, features)")
    check.same_dtype("k", k, "q", q)
    check.same_dtype("v", v, "q", q)
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(f"q, k and v must share their leading (batch, head) dims, got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k must have q's feature size d={q.shape[-1]} in its last dim, "
                         f"got k of shape {tuple(k.shape)}")
    if q.shape[-1] == 0:
        raise ValueError(f"q and k must have at least one feature (d >= 1) in their last dim, "
                         f"got q of shape {tuple(q.shape)}")
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(f"v must have as many positions as k ({k.shape[-2]}), "
                         f"got v of shape {tuple(v.shape)}")
    check.boolean("causal", causal)
    scale = (1.0 / math.sqrt(q.shape[-1]) if scale is None
             else check.real_number("scale", scale))
    return Call(q, (q, k, v), dict(causal=causal, scale=scale))


def attention_grad_args(dy: Array, cache: attention.AttentionCache) -> Call:
    """(dq, dk, dv)."""
    check.cache_type("cache", cache, attention.CACHES)
    check.gradient("dy", dy, cache.q, "q")
    check.shape("dy", dy, (*cache.q.shape[:-1], cache.v.shape[-1]), " (..., T, dv)")
    return Call(dy, (dy, cache), {})


def backward_scale(q, k, v, dy, sc: float) -> float:
    """The magnitude one term of each gradient rounds at: dq's p·(dp - D)·k·scale and dk's with
    q, where |dp| <= dv·|dy|·|v|; dv's p·dy. Two float32 products of q·k that differ in their
    last bit (BLAS on one thread or two) make p differ by that much, and a gradient whose exact
    value cancels to 0 keeps a rounding of this size."""
    def m(a):
        return float(np.max(np.abs(a), initial=0.0))
    dp = v.shape[-1] * m(dy) * m(v)
    return max(dp * max(m(k), m(q)) * abs(sc), m(dy))


def inputs(rng, size: dict) -> Sample:
    """size: lead (batch, head dims), T, S, d, dv, causal, scale (None: 1/sqrt(d)), kind and
    magnitude of the arrays."""
    lead, t, s = tuple(size["lead"]), size["T"], size["S"]
    kind, mag = size.get("kind", "normal"), size.get("magnitude", 1.0)
    q, k, v, dy = (random_floats(rng, (*lead, n, c), scale=mag, kind=kind)
                   for n, c in ((t, size["d"]), (s, size["d"]), (s, size["dv"]),
                                (t, size["dv"])))
    # A kernel's cache may keep the row log-sum-exp: p = exp(s - lse) recomputed from it
    # carries a relative error of about |s|·eps, where a stored p has eps: the backward budget
    # from such a cache scales with the largest score (the flash trade-off).
    scale = size.get("scale")
    sc = 1 / np.sqrt(size["d"]) if scale is None else scale
    max_score = abs(sc) * np.max(np.abs(q), initial=0) * np.max(np.abs(k), initial=0) * size["d"]
    return Sample((q, k, v), dict(causal=size["causal"], scale=scale), dy,
                  grad_scale=backward_scale(q, k, v, dy, sc), bwd_cond=1.0 + max_score)


def test_size(rng, max_len: int = 9) -> dict:
    lead = [(), (1,), (2,), (2, 3)][rng.integers(4)]
    return dict(lead=lead, T=int(rng.integers(1, max_len + 1)),
                S=int(rng.integers(1, max_len + 1)), d=int(rng.integers(1, 7)),
                dv=int(rng.integers(1, 6)), causal=bool(rng.integers(2)),
                scale=[None, 0.3, -0.5, 0.0][rng.integers(4)],
                kind=str(rng.choice(["normal", "uniform", "outliers"])),
                magnitude=float(rng.choice([1.0, 3.0])))


def _flops(s) -> float:
    """QKᵀ and PV over half of the (T, T) scores (causal) -> 2·B·H·T²·d FLOPs."""
    return 2 * math.prod(s["lead"]) * s["T"] * s["S"] * s["d"]


def torch_attention(torch, q, k, v, *, causal=False, scale=None):
    """torch's SDPA with nanonorm's causal alignment (the last query sees the last key)."""
    t, s = q.shape[-2], k.shape[-2]
    if not causal or t == s:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                                scale=scale)
    mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                            scale=scale)


GPT2 = dict(lead=(4, 12), T=1024, S=1024, d=64, dv=64, causal=True)
QUICK = dict(lead=(1, 2), T=70, S=70, d=8, dv=8, causal=True)

SPECS = [OpSpec(
    name="scaled_dot_product_attention", reference=attention, cache=attention.CACHES,
    check_forward=attention_args, check_backward=attention_grad_args, inputs=inputs,
    test_size=test_size,
    bench=(BenchCase("attention_causal_fwd", GPT2, QUICK, "GFLOP/s", _flops),
           # fwd+bwd: backward is 2.5x the forward (5 matmuls vs 2) -> 3.5x the forward
           BenchCase("attention_causal_fwd_bwd", GPT2, QUICK, "GFLOP/s",
                     lambda s: 3.5 * _flops(s), backward=True)),
    torch=torch_attention,
)]
