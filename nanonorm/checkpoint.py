"""Checkpoints in the Hugging Face GPT-2 layout: `model.safetensors` + `config.json`.

Reads what `save_pretrained` writes (`transformer.`-prefixed names), the bare names of the
original `gpt2` upload (`wte.weight`, `h.0.attn.c_attn.weight`), and a local Hugging Face cache
directory (`models--gpt2/snapshots/<hash>/`). The causal-mask buffers some files carry
(`h.N.attn.bias`, `h.N.attn.masked_bias`) are skipped; `h.N.attn.c_attn.bias` is a parameter.

A saved checkpoint is one unit (nanonorm.atomic_dir): weights, config, the optional training
state and a manifest of their sha256 are staged in a sibling directory that is swapped in at
once, so a kill at any moment leaves the old checkpoint or the new one and readers never see a
mix; loading verifies the manifest (`verify=False` skips it; a directory without one, as
transformers writes it, loads unverified). config.json is checked field by field and the
safetensors header against it before any tensor is read. No torch needed: safetensors' NumPy API.

This module is the public face: config.json lives in `checkpoint_config`, the files' writing and
reading in `checkpoint_io` (which the model calls), and `load` builds the GPT from them.
"""
from __future__ import annotations

from .atomic_dir import MANIFEST_NAME
from .checkpoint_config import CONFIG_NAME, config_from_hf, hf_config
from .checkpoint_io import (STATE_NAME, WEIGHTS_NAME, atomic_write, check_writable,
                            is_checkpoint, read_checkpoint, read_train_state, resolve_dir, save)
from .gpt import GPT

__all__ = ["save", "load", "read_checkpoint", "read_train_state", "is_checkpoint",
           "check_writable", "resolve_dir", "atomic_write", "hf_config", "config_from_hf",
           "WEIGHTS_NAME", "CONFIG_NAME", "STATE_NAME", "MANIFEST_NAME"]


def load(path, *, dtype: str = "float32", device: str = "cpu", verify: bool = True) -> GPT:
    """A GPT from a checkpoint directory (see read_checkpoint; verify=False skips checksums)."""
    return GPT.from_pretrained(path, dtype=dtype, device=device, verify=verify)
