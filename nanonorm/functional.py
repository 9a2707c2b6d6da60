"""The public ops: validate once at the boundary, then dispatch to an implementation.

Every op comes as `op(...)` (the output only), `op_forward(...) -> (out, cache)` and
`op_backward(dout, cache)`, which returns fresh arrays in the order of the forward's inputs
(None for an absent optional parameter). Array type, device and dtype in = out.

Every implementation (reference, Numba, CUDA) gives the same answer at the edges:
- dtypes: float32 and float64 only; float16, bfloat16, long double and other float types are
  refused with a TypeError (nothing is computed in one precision and returned in another).
- NaN in gives NaN out, where the math says it reaches: the element (GELU), the row (softmax,
  log_softmax, LayerNorm, a cross-entropy row, an attention query) - never a silent 0.
- Empty dims give empty results (or zeros where a sum over nothing is meant); the few shapes
  whose result is undefined raise a ValueError naming the argument (see each op).
"""
from __future__ import annotations

import math
import numbers

from . import validate as check
from .backend import Array
from .dispatch import resolve
from .ops.attention import AttentionCache
from .ops.embedding import EmbeddingCache
from .ops.gelu import GeluCache
from .ops.layernorm import LayerNormCache
from .ops.linear import LinearCache
from .ops.loss import CrossEntropyCache
from .ops.softmax import SoftmaxCache

__all__ = [
    "layer_norm", "layer_norm_forward", "layer_norm_backward",
    "softmax", "softmax_forward", "softmax_backward",
    "log_softmax", "log_softmax_forward", "log_softmax_backward",
    "scaled_dot_product_attention", "scaled_dot_product_attention_forward",
    "scaled_dot_product_attention_backward",
    "gelu", "gelu_forward", "gelu_backward",
    "linear", "linear_forward", "linear_backward",
    "embedding", "embedding_forward", "embedding_backward",
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward",
]


# LayerNorm ---------------------------------------------------------------------------------

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


def layer_norm_forward(x: Array, normalized_shape, weight: Array | None = None,
                       bias: Array | None = None, eps: float = 1e-5):
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
    return resolve("layer_norm_forward", x)(x, dims, weight, bias, eps)


def layer_norm_backward(dy: Array, cache: LayerNormCache):
    """(dx, dweight, dbias); dweight/dbias are None where the forward had none."""
    check.cache_type("cache", cache, LayerNormCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, cache.x_shape, " (the shape of x)")
    return resolve("layer_norm_backward", dy)(dy, cache)


def layer_norm(x: Array, normalized_shape, weight: Array | None = None,
               bias: Array | None = None, eps: float = 1e-5) -> Array:
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


# softmax / log_softmax ---------------------------------------------------------------------

def _softmax_args(x: Array, axis, temperature) -> tuple[int, float]:
    xp = check.namespace(x=x)
    check.floating(xp, "x", x)
    return (check.axis("axis", axis, x.ndim),
            check.real_number("temperature", temperature, positive=True))


def softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    """softmax(x / temperature) along `axis`.

    Any positive temperature works at any logit magnitude: the row is shifted by its max
    before dividing, so a tiny temperature gives the argmax (ties share it) and never NaN.
    A row that is all -inf gives zeros (and a zero gradient); a row holding NaN or +inf gives
    NaN; an empty axis gives an empty result.
    """
    axis, temperature = _softmax_args(x, axis, temperature)
    return resolve("softmax_forward", x)(x, axis, temperature)


def softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    check.cache_type("cache", cache, SoftmaxCache)
    check.gradient("dy", dy, cache.out, "the softmax output")
    check.shape("dy", dy, cache.out.shape, " (the shape of x)")
    return resolve("softmax_backward", dy)(dy, cache)


def softmax(x: Array, axis: int = -1, temperature: float = 1.0) -> Array:
    return softmax_forward(x, axis, temperature)[0]


def log_softmax_forward(x: Array, axis: int = -1, temperature: float = 1.0):
    """log(softmax(x / temperature)) along `axis`, formed as (x - max)/T - log Σexp (exact to
    rounding at large logits). A row that is all -inf gives -inf; a row holding NaN or +inf
    gives NaN; an empty axis gives an empty result; log-probabilities below the dtype's range
    (a tiny temperature) are -inf."""
    axis, temperature = _softmax_args(x, axis, temperature)
    return resolve("log_softmax_forward", x)(x, axis, temperature)


def log_softmax_backward(dy: Array, cache: SoftmaxCache) -> Array:
    check.cache_type("cache", cache, SoftmaxCache)
    check.gradient("dy", dy, cache.out, "the log_softmax output")
    check.shape("dy", dy, cache.out.shape, " (the shape of x)")
    return resolve("log_softmax_backward", dy)(dy, cache)


def log_softmax(x: Array, axis: int = -1, temperature: float = 1.0) -> Array:
    return log_softmax_forward(x, axis, temperature)[0]


# attention ---------------------------------------------------------------------------------

def scaled_dot_product_attention_forward(q: Array, k: Array, v: Array, *, causal: bool = False,
                                         scale: float | None = None):
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
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
    scale = (1.0 / math.sqrt(q.shape[-1]) if scale is None
             else check.real_number("scale", scale))
    return resolve("scaled_dot_product_attention_forward", q)(q, k, v, causal=causal,
                                                              scale=scale)


def scaled_dot_product_attention_backward(dy: Array, cache: AttentionCache):
    """(dq, dk, dv)."""
    check.cache_type("cache", cache, AttentionCache)
    check.gradient("dy", dy, cache.q, "q")
    check.shape("dy", dy, (*cache.q.shape[:-1], cache.v.shape[-1]), " (..., T, dv)")
    return resolve("scaled_dot_product_attention_backward", dy)(dy, cache)


def scaled_dot_product_attention(q: Array, k: Array, v: Array, *, causal: bool = False,
                                 scale: float | None = None) -> Array:
    return scaled_dot_product_attention_forward(q, k, v, causal=causal, scale=scale)[0]


# GELU --------------------------------------------------------------------------------------

def gelu_forward(x: Array):
    """GELU, tanh approximation (GPT-2's). gelu(+inf) = +inf and gelu(-inf) = 0 with
    gradients 1 and 0 there (its limits, as for large finite x); NaN gives NaN."""
    xp = check.namespace(x=x)
    check.floating(xp, "x", x)
    return resolve("gelu_forward", x)(x)


def gelu_backward(dy: Array, cache: GeluCache) -> Array:
    check.cache_type("cache", cache, GeluCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, cache.x.shape, " (the shape of x)")
    return resolve("gelu_backward", dy)(dy, cache)


def gelu(x: Array) -> Array:
    return gelu_forward(x)[0]


# linear ------------------------------------------------------------------------------------

def linear_forward(x: Array, weight: Array, bias: Array | None = None):
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
    return resolve("linear_forward", x)(x, weight, bias)


def linear_backward(dy: Array, cache: LinearCache):
    """(dx, dweight, dbias); dbias is None where the forward had none."""
    check.cache_type("cache", cache, LinearCache)
    check.gradient("dy", dy, cache.x, "x")
    check.shape("dy", dy, (*cache.x.shape[:-1], cache.weight.shape[1]), " (..., out_features)")
    return resolve("linear_backward", dy)(dy, cache)


def linear(x: Array, weight: Array, bias: Array | None = None) -> Array:
    return linear_forward(x, weight, bias)[0]


# embedding ---------------------------------------------------------------------------------

def embedding_forward(idx: Array, weight: Array):
    """weight[idx]: idx integer (...), weight (V, C) -> (..., C)."""
    xp = check.namespace(idx=idx, weight=weight)
    check.integer(xp, "idx", idx)
    check.floating(xp, "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (num_embeddings, embedding_dim), "
                         f"got {tuple(weight.shape)}")
    check.index_range(xp, "idx", idx, weight.shape[0], "ids into weight's rows")
    return resolve("embedding_forward", weight)(idx, weight)


def embedding_backward(dy: Array, cache: EmbeddingCache) -> Array:
    """dweight (V, C): rows of repeated ids accumulate."""
    check.cache_type("cache", cache, EmbeddingCache)
    xp = check.namespace(dy=dy)
    check.floating(xp, "dy", dy)
    n, c = cache.idx.shape[0], cache.weight_shape[1]
    if dy.ndim < 1 or dy.shape[-1] != c or math.prod(dy.shape) != n * c:
        raise ValueError(f"dy must have shape idx.shape + ({c},), got {tuple(dy.shape)}")
    return resolve("embedding_backward", dy)(dy, cache)


def embedding(idx: Array, weight: Array) -> Array:
    return embedding_forward(idx, weight)[0]


# cross-entropy -----------------------------------------------------------------------------

def cross_entropy_forward(logits: Array, targets: Array):
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
    return resolve("cross_entropy_forward", logits)(logits, targets)


def cross_entropy_backward(dloss, cache: CrossEntropyCache) -> Array:
    """dlogits for an upstream gradient `dloss` of the scalar loss (1.0 for the loss itself)."""
    check.cache_type("cache", cache, CrossEntropyCache)
    if not isinstance(dloss, numbers.Real) or isinstance(dloss, bool):
        check.gradient("dloss", dloss, cache.logits, "logits")
        check.shape("dloss", dloss, (), " (a scalar)")
    return resolve("cross_entropy_backward", cache.logits)(dloss, cache)


def cross_entropy(logits: Array, targets: Array) -> Array:
    return cross_entropy_forward(logits, targets)[0]
