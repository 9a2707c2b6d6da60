"""Sampling for GPT.generate: greedy, temperature, top-k and top-p, decoded with a KV cache.

The choice of token runs on the logits' device (sort, cumulative sum, comparisons); only the
uniform draws come from a host NumPy generator, so a seed gives the same tokens on every
backend and nothing is read back inside the decoding loop.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from . import validate as check
from .backend import Array, array_device, array_namespace

__all__ = ["generate", "sample", "filter_top_k", "filter_top_p"]


def filter_top_k(logits: Array, k: int) -> Array:
    """logits (B, V) with everything below each row's k-th largest value set to -inf."""
    _check(0, 1.0, k, None, None)
    xp = array_namespace(logits)
    if k >= logits.shape[-1]:
        return logits
    kth = xp.sort(logits, axis=-1, descending=True)[:, k - 1:k]        # (B, 1)
    return xp.where(logits < kth, xp.full_like(logits, -xp.inf), logits)


def filter_top_p(probs: Array, p: float) -> Array:
    """probs (B, V) restricted to the smallest set of most likely tokens whose mass reaches p
    (the nucleus), renormalised; a token tied with the least likely kept one is kept too."""
    _check(0, 1.0, None, p, None)
    xp = array_namespace(probs)
    desc = xp.sort(probs, axis=-1, descending=True)                    # (B, V)
    before = xp.cumulative_sum(desc, axis=-1) - desc                   # mass ranked above each
    n_keep = xp.sum(xp.astype(before < p, xp.int64), axis=-1, keepdims=True)   # (B, 1), >= 1
    floor = xp.take_along_axis(desc, n_keep - 1, axis=-1)              # (B, 1) smallest kept
    kept = xp.where(probs >= floor, probs, xp.zeros_like(probs))
    return kept / xp.sum(kept, axis=-1, keepdims=True)


def sample(logits: Array, *, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, rng: np.random.Generator) -> Array:
    """One token id per row of logits (B, V): argmax when temperature == 0, otherwise a draw
    from softmax(logits / temperature) after the top-k / top-p filters."""
    _check(0, temperature, top_k, top_p, None)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    xp = array_namespace(logits)
    if temperature == 0:
        return xp.argmax(logits, axis=-1)                             # (B,)
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    probs = F.softmax(logits, axis=-1, temperature=temperature)        # (B, V)
    if top_p is not None and top_p < 1.0:
        probs = filter_top_p(probs, top_p)
    # inverse CDF: the first token whose cumulative mass reaches u·total, u in (0, 1]
    cdf = xp.cumulative_sum(probs, axis=-1)                            # (B, V)
    u = xp.asarray(1.0 - rng.random(logits.shape[0]), dtype=probs.dtype,
                   device=array_device(logits))                       # (B,)
    ids = xp.sum(xp.astype(cdf < u[:, None] * cdf[:, -1:], xp.int64), axis=-1)
    return xp.clip(ids, max=logits.shape[-1] - 1)                      # (B,)


def _check(max_new_tokens, temperature, top_k, top_p, seed) -> None:
    if not check.is_integer(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    if not check.is_real(temperature) or not 0 <= temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not check.is_integer(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (not check.is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    if seed is not None and (not check.is_integer(seed) or seed < 0):
        raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")


def _prompt(model, idx):
    """(ids (B, T) in the model's library, whether idx was 1-D); every check names idx."""
    if isinstance(idx, (list, tuple)):
        try:
            idx = np.asarray(idx)
        except ValueError:
            raise ValueError("idx must be a rectangular (batch, positions) or (positions,) "
                             "sequence of token ids") from None
    flat = getattr(idx, "ndim", None) == 1
    ids = model.token_ids("idx", idx[None, :] if flat else idx)        # (B, T)
    if ids.shape[1] > model.config.block_size:
        raise ValueError(f"idx has {ids.shape[1]} positions but the model's block_size is "
                         f"{model.config.block_size}: pass at most the last "
                         f"{model.config.block_size} ids")
    return ids, flat


def _crop(ids: Array, block: int) -> Array:
    """The last `block` positions (the standard forbids out-of-range slice starts)."""
    return ids[:, max(0, ids.shape[1] - block):]


def generate(model, idx, max_new_tokens: int, *, temperature: float = 1.0, top_k=None,
             top_p=None, seed=None) -> Array:
    """idx (B, T) or (T,) followed by max_new_tokens ids, in the model's array library.

    The prompt must fit in block_size positions (a longer one is refused, not cropped); the
    output may grow past it. While the context fits, each new token costs one position
    through the KV cache; once the window slides, positions shift and the last block_size ids
    are recomputed from scratch each step (as nanoGPT does).
    """
    _check(max_new_tokens, temperature, top_k, top_p, seed)
    ids, flat = _prompt(model, idx)                                    # (B, T)
    xp, block = model.xp, model.config.block_size
    rng = np.random.default_rng(seed)
    logits, kv = model.forward_kv(ids)                                 # (B, V)
    new = []
    for n in range(max_new_tokens):
        nxt = xp.astype(sample(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                               rng=rng), ids.dtype)                    # (B,)
        new.append(nxt)
        if n == max_new_tokens - 1:
            break
        if kv.length < block:
            logits, kv = model.forward_kv(nxt[:, None], kv)
        else:
            logits, kv = model.forward_kv(_crop(xp.concat([ids, xp.stack(new, axis=1)], axis=1),
                                                block))
    out = xp.concat([ids, xp.stack(new, axis=1)], axis=1) if new else ids
    return out[0, :] if flat else out
