"""config.json: a GPTConfig in the form transformers' GPT2Config writes, both ways.

Reading checks each field for its JSON type and range before a GPTConfig exists, so a hostile or
mistyped file is refused with the field's name, and anything GPT-2 here lacks (another
activation, attention scaling, MLP width) is refused rather than silently ignored.
"""
from __future__ import annotations

import json
import math

from .gpt_config import LIMITS, GPTConfig
from .validate import short_repr

__all__ = ["CONFIG_NAME", "hf_config", "config_from_hf", "parse_config"]

CONFIG_NAME = "config.json"
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def hf_config(config: GPTConfig) -> dict:
    """config.json as transformers' GPT2Config writes it (the keys GPT-2 loaders read)."""
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
        "vocab_size": config.vocab_size, "n_positions": config.block_size,
        "n_ctx": config.block_size, "layer_norm_epsilon": config.ln_eps,
        "tie_word_embeddings": config.tie_weights, "activation_function": "gelu_new",
        "n_inner": None, "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
    }


def config_from_hf(d: dict, source: str = CONFIG_NAME) -> GPTConfig:
    """GPTConfig from a Hugging Face GPT-2 config dict, each field checked for its JSON type
    and range first; ValueError naming the field (and what GPT-2 here lacks)."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(d).__name__}")

    def fail(message):
        raise ValueError(f"{source}: {message}")

    def integer(key, field):
        if key not in d:
            fail(f"missing key {key!r}")
        v = d[key]
        if type(v) is not int:
            fail(f"{key} must be an integer, got {short_repr(v)}")
        if not 1 <= v <= LIMITS[field]:
            fail(f"{key} must be in [1, {LIMITS[field]:,}], got {short_repr(v)}")
        return v

    def flag(key, default):
        v = d.get(key, default)
        if type(v) is not bool:
            fail(f"{key} must be true or false, got {short_repr(v)}")
        return v

    if d.get("model_type", "gpt2") != "gpt2":
        fail(f"model_type is {short_repr(d['model_type'])}, expected 'gpt2'")
    sizes = {field: integer(key, field) for key, field in (
        ("n_layer", "n_layer"), ("n_head", "n_head"), ("n_embd", "n_embd"),
        ("vocab_size", "vocab_size"),
        ("n_positions" if "n_positions" in d or "n_ctx" not in d else "n_ctx", "block_size"))}
    eps = d.get("layer_norm_epsilon", 1e-5)
    if type(eps) not in (int, float) or not 0 < eps < math.inf:
        fail(f"layer_norm_epsilon must be a finite positive number, got {short_repr(eps)}")
    act = d.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in _TANH_GELUS:
        fail(f"activation_function {short_repr(act)} is not supported (GPT-2 uses the tanh GELU: "
             f"{_TANH_GELUS})")
    inner = d.get("n_inner")
    if inner is not None and (type(inner) is not int or inner != 4 * sizes["n_embd"]):
        fail(f"n_inner={short_repr(inner)} is not supported (must be null or 4·n_embd)")
    if flag("scale_attn_by_inverse_layer_idx", False) or not flag("scale_attn_weights", True):
        fail("non-standard attention scaling is not supported")
    tie = flag("tie_word_embeddings", True)
    try:
        return GPTConfig(**sizes, tie_weights=tie, ln_eps=float(eps))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from None


def parse_config(data: bytes, source: str) -> GPTConfig:
    """GPTConfig from the bytes of a config.json (named `source` in errors)."""
    try:
        d = json.loads(data)
    except (ValueError, RecursionError) as e:   # UnicodeDecodeError is a ValueError
        raise ValueError(f"{source!r} is not valid JSON: {short_repr(str(e), 120)}") from None
    return config_from_hf(d, source)
