"""embedding's declaration: public checks and drawn inputs (a gather and a scatter-add: no
kernel, no bench row)."""
from __future__ import annotations

import math

from .. import validate as check
from ..backend import Array
from ..opspec import Call, OpSpec, Sample
from ..ops import embedding
from ..testing.arrays import awkward_shape


def embedding_args(idx: Array, weight: Array) -> Call:
    """weight[idx]: idx integer (...), weight (V, C) -> (..., C)."""
    xp = check.namespace(idx=idx, weight=weight)
    check.integer(xp, "idx", idx)
    check.floating(xp, "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (num_embeddings, embedding_dim), "
                         f"got {tuple(weight.shape)}")
    check.index_range(xp, "idx", idx, weight.shape[0], "ids into weight's rows")
    return Call(weight, (idx, weight), {})


def embedding_grad_args(dy: Array, cache: embedding.EmbeddingCache) -> Call:
    """dweight (V, C): rows of repeated ids accumulate."""
    check.cache_type("cache", cache, embedding.EmbeddingCache)
    xp = check.namespace(dy=dy)
    check.floating(xp, "dy", dy)
    n, c = cache.idx.shape[0], cache.weight_shape[1]
    if dy.ndim < 1 or dy.shape[-1] != c or math.prod(dy.shape) != n * c:
        raise ValueError(f"dy must have shape idx.shape + ({c},), got {tuple(dy.shape)}")
    return Call(dy, (dy, cache), {})


def inputs(rng, size: dict) -> Sample:
    """size: ids (the shape of idx), V, C; ids repeat (their rows accumulate)."""
    idx = rng.integers(0, size["V"], size["ids"])
    weight = rng.standard_normal((size["V"], size["C"]))
    return Sample((idx, weight), {}, rng.standard_normal((*size["ids"], size["C"])))


def test_size(rng) -> dict:
    return dict(ids=awkward_shape(rng, 1, 2), V=int(rng.integers(1, 6)),
                C=int(rng.integers(1, 9)))


SPECS = [OpSpec(
    name="embedding", reference=embedding, cache=(embedding.EmbeddingCache,),
    check_forward=embedding_args, check_backward=embedding_grad_args, inputs=inputs,
    test_size=test_size, torch=lambda torch, idx, w: torch.nn.functional.embedding(idx, w),
)]
