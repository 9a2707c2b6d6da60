"""Study 6: the distribution of every LayerNorm gain γ and shift β in a GPT-2 model.

With `--checkpoint` the model is loaded from disk; without one it is a freshly initialised GPT,
whose γ are exactly 1 and β exactly 0 by construction. Pretrained GPT-2 weights cannot be
downloaded on an offline machine, so the seed's trained-model figures are quoted, not measured.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..backend import to_numpy

LN_MODULES = ("ln_1", "ln_2", "ln_f")
# the seed's figures (2-attention-scaling.md §4.3: trained GPT-2), quoted
SEED = {"gamma": "mostly in 0.2–0.4", "beta": "concentrated around 0",
        "reading": "LayerNorm mainly shrinks activations"}


def load_parameters(checkpoint=None, *, preset: str = "mini", seed: int = 0) -> tuple[dict, str]:
    """(parameters, label): the checkpoint's, or a fresh GPT of `preset` when there is none."""
    from ..gpt import GPT, GPTConfig

    if checkpoint is not None:
        model = GPT.from_pretrained(checkpoint)
        return model.parameters(), f"checkpoint {checkpoint} ({model.config})"
    model = GPT(GPTConfig.preset(preset), seed=seed)
    return model.parameters(), (f"freshly initialised '{preset}' GPT (no --checkpoint given): "
                                "γ = 1 and β = 0 by construction")


def layernorm_parameters(params: dict, *, label: str = "", bins: int = 60) -> dict:
    """Summary statistics and histograms of all LN weights (γ) and biases (β) in `params`."""
    names = [n for n in params if n.split(".")[-2] in LN_MODULES]
    out = {"label": label, "modules": sorted({n.rsplit(".", 1)[0] for n in names})}
    for kind, suffix in (("gamma", ".weight"), ("beta", ".bias")):
        v = np.concatenate([to_numpy(params[n]).astype(np.float64).ravel()
                            for n in names if n.endswith(suffix)])
        lo, hi = float(v.min()), float(v.max())
        span = (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)  # a fresh model: all one value
        counts, edges = np.histogram(v, bins=bins, range=span)
        out[kind] = {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()),
                     "min": lo, "max": hi,
                     "percentiles": dict(zip(("p5", "p25", "p50", "p75", "p95"),
                                             np.percentile(v, [5, 25, 50, 75, 95]).tolist())),
                     "hist": counts.tolist(), "bin_edges": edges.tolist()}
        # the seed's claim about this kind, measured on this model
        if kind == "gamma":
            out[kind]["share_in_0.2_0.4"] = float(np.mean((v >= 0.2) & (v <= 0.4)))
        else:
            out[kind]["share_abs_below_0.1"] = float(np.mean(np.abs(v) < 0.1))
    return out


def plot(result: dict) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    for ax, kind, sym in zip(fig.subplots(1, 2), ("gamma", "beta"), ("γ (weight)", "β (bias)")):
        r = result[kind]
        ax.stairs(r["hist"], r["bin_edges"], fill=True, alpha=0.6)
        ax.set_yscale("log")
        ax.set_xlabel(f"LayerNorm {sym}")
        ax.set_ylabel("count (log scale)")
        ax.set_ylim(bottom=0.5)
        ax.set_title(f"{r['count']:,} values, mean {r['mean']:.3g}, std {r['std']:.3g}")
        if kind == "gamma":
            ax.axvspan(0.2, 0.4, color="orange", alpha=0.2, label="seed: trained GPT-2 γ mostly "
                                                                   "0.2–0.4")
        else:
            ax.axvline(0.0, color="orange", ls="--", label="seed: trained GPT-2 β around 0")
        ax.legend(fontsize=8)
    fig.suptitle(f"LayerNorm parameters of: {result['label']}", fontsize=10)
    return fig
