"""GPTConfig: GPT-2's hyperparameters, its presets and its parameter count, computed analytically.

The count is a closed formula (nothing is allocated, so gpt2-xl costs nothing to ask about);
`parameter_shapes` is the name → shape table the model allocates from, written separately so
that the test "analytic count == allocated count" compares two independent derivations.
"""
from __future__ import annotations

import dataclasses
import math

from . import validate as check

__all__ = ["GPTConfig", "PRESETS", "LIMITS", "MAX_PARAMETERS", "parameter_shapes"]

# upper bounds far above any GPT-2 (gpt2-xl: 48 layers, 25 heads, 1600 wide, 50257 tokens,
# 1024 positions) that keep a hostile or mistyped config from allocating or expanding anything
LIMITS = {"n_layer": 1024, "n_head": 1024, "n_embd": 65536, "vocab_size": 1 << 24,
          "block_size": 1 << 20}
MAX_PARAMETERS = 10**11     # 400 GB in float32: more than any one machine here holds

# name -> GPTConfig fields
PRESETS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    # GPT-2 small with its own unembedding matrix (the source documents' "Model 5")
    "model5": dict(n_layer=12, n_head=12, n_embd=768, tie_weights=False),
    # byte-level models for tests and CPU demos
    "tiny": dict(n_layer=2, n_head=2, n_embd=16, vocab_size=256, block_size=32),
    "mini": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=256, block_size=128),
}


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int = 50257
    block_size: int = 1024
    tie_weights: bool = True
    ln_eps: float = 1e-5

    def __post_init__(self):
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if not check.is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {check.short_repr(value)}")
            if value > limit:
                raise ValueError(f"{name} must be at most {limit:,}, got "
                                 f"{check.short_repr(value)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head})")
        check.boolean("tie_weights", self.tie_weights)
        if not check.is_real(self.ln_eps) or not 0 < self.ln_eps < math.inf:
            raise ValueError(f"ln_eps must be a finite positive number, got "
                             f"{check.short_repr(self.ln_eps)}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ValueError(f"this configuration has {self.num_parameters():,} parameters, more "
                             f"than the {MAX_PARAMETERS:,} nanonorm accepts")

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        """A named configuration (see PRESETS); keyword overrides replace single fields."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def parameter_breakdown(self) -> dict[str, dict[str, int]]:
        """Parameters per component, split into weights and biases, from closed formulas.

        Rows: embeddings (wte + wpe), attention (c_attn + c_proj), mlp (c_fc + c_proj),
        layernorm (2 per block + ln_f; LN gains count as weights, LN shifts as biases),
        unembedding (0 when tied: lm_head *is* wte), and total. Each row is
        {"weights", "biases", "total"}.
        """
        c, v, p, n = self.n_embd, self.vocab_size, self.block_size, self.n_layer
        rows = {
            "embeddings": (v * c + p * c, 0),
            "attention": (n * 4 * c * c, n * 4 * c),       # (C,3C)+(C,C); 3C + C
            "mlp": (n * 8 * c * c, n * 5 * c),             # (C,4C)+(4C,C); 4C + C
            "layernorm": ((2 * n + 1) * c, (2 * n + 1) * c),
            "unembedding": (0 if self.tie_weights else v * c, 0),
        }
        out = {k: {"weights": w, "biases": b, "total": w + b} for k, (w, b) in rows.items()}
        w, b = sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())
        out["total"] = {"weights": w, "biases": b, "total": w + b}
        return out

    def num_parameters(self) -> int:
        """The exact number of trainable parameters (tied wte/lm_head counted once)."""
        return self.parameter_breakdown()["total"]["total"]


def parameter_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face GPT-2 names → shapes, linear weights in Conv1D's (in, out) layout."""
    c, v = config.n_embd, config.vocab_size
    shapes = {"transformer.wte.weight": (v, c), "transformer.wpe.weight": (config.block_size, c)}
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        shapes.update({
            h + "ln_1.weight": (c,), h + "ln_1.bias": (c,),
            h + "attn.c_attn.weight": (c, 3 * c), h + "attn.c_attn.bias": (3 * c,),
            h + "attn.c_proj.weight": (c, c), h + "attn.c_proj.bias": (c,),
            h + "ln_2.weight": (c,), h + "ln_2.bias": (c,),
            h + "mlp.c_fc.weight": (c, 4 * c), h + "mlp.c_fc.bias": (4 * c,),
            h + "mlp.c_proj.weight": (4 * c, c), h + "mlp.c_proj.bias": (c,),
        })
    shapes.update({"transformer.ln_f.weight": (c,), "transformer.ln_f.bias": (c,)})
    if not config.tie_weights:
        shapes["lm_head.weight"] = (v, c)
    return shapes
