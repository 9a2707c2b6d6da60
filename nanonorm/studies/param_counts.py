"""Study 7: how many parameters GPT-2 has, where they sit, and weight tying.

Counts come from GPTConfig's closed formulas (nothing allocated, so gpt2-xl is free) and are
checked against the arrays a small GPT actually allocates.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..backend import to_numpy
from ..gpt_config import GPTConfig

MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "model5")
COMPONENTS = ("embeddings", "attention", "mlp", "layernorm", "unembedding")
# the seed's figures (3-gpt2-parameter-counts.md, §4.1, §4.2, §5.2, §6.2), quoted
SEED = {"gpt2": "124 triệu (124M)", "gpt2-medium": "~355M", "gpt2-large": "~774M",
        "gpt2-xl": "~1.5 tỷ (1.5B)", "model5": "≈ 163M; 163M − 38M ≈ 124M",
        "weights_share": "~99.9%", "biases_share": "< 0.1%",
        "tying": "correlation between embedding and unembedding ≈ 1"}


def parameter_counts(models=MODELS) -> dict:
    """Total, weights, biases and per-component counts of each preset; Model 5 vs GPT-2."""
    rows = {}
    for name in models:
        cfg = GPTConfig.preset(name)
        br = cfg.parameter_breakdown()
        total = br["total"]
        rows[name] = {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                      "tie_weights": cfg.tie_weights, "total": total["total"],
                      "weights": total["weights"], "biases": total["biases"],
                      "biases_share": total["biases"] / total["total"],
                      "components": {c: br[c]["total"] for c in COMPONENTS}}
    untied, tied = GPTConfig.preset("model5"), GPTConfig.preset("gpt2")
    return {"models": rows, "model5_vs_gpt2": {
        "untied": untied.num_parameters(), "unembedding": untied.vocab_size * untied.n_embd,
        "tied": tied.num_parameters(),
        "untied_minus_unembedding": untied.num_parameters() - untied.vocab_size * untied.n_embd}}


def weight_tying(*, preset: str = "mini", seed: int = 0) -> dict:
    """Pearson correlation of the embedding with the unembedding matrix, tied and untied, and
    the allocated parameter counts against the analytic ones."""
    from ..gpt import GPT

    out = {"preset": preset}
    for tie in (True, False):
        cfg = GPTConfig.preset(preset, tie_weights=tie)
        params = GPT(cfg, seed=seed).parameters()
        wte = to_numpy(params["transformer.wte.weight"])
        # tied: the head multiplies by wte itself (no lm_head.weight is stored)
        head = to_numpy(params.get("lm_head.weight", params["transformer.wte.weight"]))
        out["tied" if tie else "untied"] = {
            "correlation": float(np.corrcoef(wte.ravel(), head.ravel())[0, 1]),
            "has_lm_head_weight": "lm_head.weight" in params,
            "allocated": int(sum(p.size for p in params.values())),
            "analytic": cfg.num_parameters(),
            # a few entries for the scatter plot
            "sample": [wte.ravel()[:2000].tolist(), head.ravel()[:2000].tolist()]}
    return out


def plot(counts: dict, tying: dict) -> Figure:
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    a, b, c = fig.subplots(1, 3, width_ratios=(2.2, 1, 1))
    names = list(counts["models"])
    left = np.zeros(len(names))
    for i, comp in enumerate(COMPONENTS):
        vals = np.array([counts["models"][n]["components"][comp] for n in names]) / 1e6
        a.barh(names, vals, left=left, color=f"C{i}", label=comp)
        left += vals
    for y, n in enumerate(names):
        a.text(left[y], y, f" {counts['models'][n]['total'] / 1e6:,.1f}M", va="center",
               fontsize=8)
    a.invert_yaxis()
    a.set_xlim(0, left.max() * 1.18)
    a.set_xlabel("parameters (millions)")
    a.set_title("Where GPT-2's parameters sit")
    a.legend(fontsize=8, loc="upper right")
    for ax, key in ((b, "tied"), (c, "untied")):
        t = tying[key]
        ax.plot(t["sample"][0], t["sample"][1], ".", ms=2, alpha=0.5)
        ax.set_title(f"{key}: r = {t['correlation']:.3f}")
        ax.set_xlabel("embedding wte entry")
        ax.set_ylabel("unembedding entry")
    fig.suptitle(f"Parameter counts, and weight tying checked on the '{tying['preset']}' preset")
    return fig
