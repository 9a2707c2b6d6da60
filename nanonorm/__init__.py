"""nanonorm: LayerNorm, attention and a mini GPT-2 with forward and backward written by hand.

    import nanonorm
    y, cache = nanonorm.functional.layer_norm_forward(x, (768,), w, b)
    dx, dw, db = nanonorm.functional.layer_norm_backward(dy, cache)
"""
from __future__ import annotations

import importlib

from . import functional
from .device_checks import check_pending
from .dispatch import use_impl

__version__ = "0.1.0"
__all__ = ["GPT", "GPTConfig", "check_pending", "functional", "optim", "testing", "use_impl",
           "__version__"]

# Heavier pieces load on first use, so `import nanonorm` stays quick.
_LAZY = {"GPT": ("nanonorm.gpt", "GPT"), "GPTConfig": ("nanonorm.gpt", "GPTConfig"),
         "optim": ("nanonorm.optim", None), "testing": ("nanonorm.testing", None)}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nanonorm' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)
