"""Checkpoints in the Hugging Face GPT-2 layout: `model.safetensors` + `config.json`.

Reads what `save_pretrained` writes (`transformer.`-prefixed names), the bare names of the
original `gpt2` upload (`wte.weight`, `h.0.attn.c_attn.weight`), and a local Hugging Face cache
directory (`models--gpt2/snapshots/<hash>/`). The causal-mask buffers some files carry
(`h.N.attn.bias`, `h.N.attn.masked_bias`) are skipped; `h.N.attn.c_attn.bias` is a parameter.
Every file is written to a temporary file in the same directory and renamed over the target, so
an interrupted save leaves the previous file intact. No torch needed: safetensors' NumPy API.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .backend import to_numpy
from .gpt_config import GPTConfig, parameter_shapes

__all__ = ["save", "load", "read_checkpoint", "resolve_dir", "atomic_write", "hf_config",
           "config_from_hf", "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# attention-mask buffers stored by older transformers versions: not parameters
_MASK_BUFFER = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def atomic_write(path, write: Callable[[str], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it over `path`.

    Rename within one directory is atomic, so readers see the old file or the new one, never a
    partial one; on any exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """GPTConfig from a Hugging Face GPT-2 config dict; ValueError for what GPT-2 here lacks."""
    if d.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{source}: model_type is {d['model_type']!r}, expected 'gpt2'")
    for key in ("n_layer", "n_head", "n_embd", "vocab_size"):
        if key not in d:
            raise ValueError(f"{source}: missing key {key!r}")
    if "n_positions" not in d and "n_ctx" not in d:
        raise ValueError(f"{source}: missing key 'n_positions'")
    if d.get("activation_function", "gelu_new") not in _TANH_GELUS:
        raise ValueError(f"{source}: activation_function {d['activation_function']!r} is not "
                         f"supported (GPT-2 uses the tanh GELU: {_TANH_GELUS})")
    if d.get("n_inner") not in (None, 4 * d["n_embd"]):
        raise ValueError(f"{source}: n_inner={d['n_inner']} is not supported (must be 4·n_embd)")
    if d.get("scale_attn_by_inverse_layer_idx") or not d.get("scale_attn_weights", True):
        raise ValueError(f"{source}: non-standard attention scaling is not supported")
    try:
        return GPTConfig(n_layer=d["n_layer"], n_head=d["n_head"], n_embd=d["n_embd"],
                         vocab_size=d["vocab_size"],
                         block_size=d.get("n_positions", d.get("n_ctx")),
                         tie_weights=bool(d.get("tie_word_embeddings", True)),
                         ln_eps=float(d.get("layer_norm_epsilon", 1e-5)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from None


def save(model, path) -> None:
    """Write path/model.safetensors then path/config.json, each atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {n: np.ascontiguousarray(to_numpy(a)) for n, a in model.parameters().items()}
    # "format": "pt" is what transformers checks for before it reads a safetensors file
    atomic_write(path / WEIGHTS_NAME,
                 lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    text = json.dumps(hf_config(model.config), indent=2) + "\n"
    atomic_write(path / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))


def resolve_dir(path) -> Path:
    """The directory holding config.json: `path` itself, or the snapshot a Hugging Face cache
    repository directory (`.../models--gpt2`) points to with refs/main."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    snapshots = path / "snapshots"
    if not (path / CONFIG_NAME).exists() and snapshots.is_dir():
        ref = path / "refs" / "main"
        if ref.is_file():
            return snapshots / ref.read_text().strip()
        found = sorted(p for p in snapshots.iterdir() if p.is_dir())
        if len(found) != 1:
            raise FileNotFoundError(f"{str(path)!r} is a Hugging Face cache directory with "
                                    f"{len(found)} snapshots and no refs/main; pass one snapshot")
        return found[0]
    return path


def read_checkpoint(path, dtype: str = "float32") -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(config, host arrays under our names, cast to dtype), fully validated."""
    root = resolve_dir(path)
    config_file, weights_file = root / CONFIG_NAME, root / WEIGHTS_NAME
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(config_file)!r} not found")
    try:
        config = config_from_hf(json.loads(config_file.read_text()), str(config_file))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(config_file)!r} is not valid JSON: {e}") from None
    if not weights_file.is_file():
        raise FileNotFoundError(f"{str(weights_file)!r} not found (only single-file safetensors "
                                f"checkpoints are read)")
    expected = parameter_shapes(config)
    arrays: dict[str, np.ndarray] = {}
    for key, array in _tensors(weights_file):
        if _MASK_BUFFER.match(key):
            continue
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        if name == "lm_head.weight" and config.tie_weights:
            continue            # a tied copy of wte that some writers store
        if name not in expected:
            raise ValueError(f"{weights_file}: unexpected tensor {key!r} for this config")
        if name in arrays:
            raise ValueError(f"{weights_file}: tensor {key!r} appears under two names")
        if tuple(array.shape) != expected[name]:
            raise ValueError(f"{weights_file}: tensor {key!r} has shape {tuple(array.shape)}, "
                             f"expected {expected[name]} from {CONFIG_NAME}")
        if array.dtype.kind != "f":
            raise ValueError(f"{weights_file}: tensor {key!r} has dtype {array.dtype}, "
                             f"expected floating point")
        arrays[name] = array.astype(dtype, copy=False)
    missing = [n for n in expected if n not in arrays]
    if missing:
        raise ValueError(f"{weights_file}: missing tensors {missing}")
    return config, arrays


def _tensors(file: Path):
    """(key, array) pairs, one tensor in memory at a time; unreadable data → OSError."""
    try:
        with safe_open(str(file), framework="np") as f:
            keys = list(f.keys())
            for key in keys:
                try:
                    array = f.get_tensor(key)
                except Exception as e:   # safetensors raises its own error types
                    raise OSError(f"{file}: tensor {key!r} could not be read ({e})") from None
                yield key, array
    except OSError:
        raise
    except Exception as e:
        raise OSError(f"{file}: not a readable safetensors file ({e})") from None


def load(path, *, dtype: str = "float32", device: str = "cpu"):
    from .gpt import DTYPES, GPT
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    config, arrays = read_checkpoint(path, dtype)
    return GPT._from_arrays(config, arrays, dtype=dtype, device=device)
