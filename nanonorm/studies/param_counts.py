"""Study 7 (note 3): how many parameters GPT-2 has, where they sit, and weight tying.

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
# note 3's figures (§4.1, §4.2, §5.2, §6.2), quoted
NOTE = {"gpt2": "124 triệu (124M)", "gpt2-medium": "~355M", "gpt2-large": "~774M",
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


def pearson(a, b) -> float:
    """Pearson correlation in float64, written so that identical inputs give exactly 1.0
    (sqrt of a rounded square is exact in binary floating point)."""
    a = np.asarray(a, np.float64).ravel() - np.mean(a, dtype=np.float64)
    b = np.asarray(b, np.float64).ravel() - np.mean(b, dtype=np.float64)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def _embedding_vs_unembedding(model) -> dict:
    params = model.parameters()
    wte = to_numpy(params["transformer.wte.weight"])
    # tied: the head multiplies by wte itself (no lm_head.weight is stored)
    head = to_numpy(params.get("lm_head.weight", params["transformer.wte.weight"]))
    return {"correlation": pearson(wte, head), "identical": bool(np.array_equal(wte, head)),
            "max_abs_difference": float(np.max(np.abs(wte - head)))}


def weight_tying(*, preset: str = "tiny", steps: int = 100, batch: int = 8, seq: int = 32,
                 lr: float = 3e-3, seed: int = 0, progress=None) -> dict:
    """A tied and an untied model from the same initial weights (the untied head starts as a
    copy of the embedding), trained for the same steps on the same batches: the correlation
    of embedding and unembedding before and after, and the allocated parameter counts."""
    from ..gpt import GPT
    from . import training

    tied = GPT(GPTConfig.preset(preset, tie_weights=True), seed=seed)
    untied = GPT(GPTConfig.preset(preset, tie_weights=False), seed=seed)
    wte = tied.parameters()["transformer.wte.weight"]
    untied.load_state_dict({**tied.state_dict(), "lm_head.weight": wte})
    out = {"preset": preset, "steps": steps, "batch": batch, "seq": seq, "lr": lr}
    for key, model in (("tied", tied), ("untied", untied)):
        before = _embedding_vs_unembedding(model)
        tell = (lambda s, k=key: progress(f"{k}: step {s}/{steps}")) if progress else None
        run = training.train(model, steps=steps, batch=batch, seq=seq, lr=lr, seed=seed,
                             on_step=tell)
        params = model.parameters()
        wte_now = to_numpy(params["transformer.wte.weight"])
        head_now = to_numpy(params.get("lm_head.weight", params["transformer.wte.weight"]))
        out[key] = {"before": before, "after": _embedding_vs_unembedding(model),
                    "losses": run["losses"],
                    "has_lm_head_weight": "lm_head.weight" in params,
                    "allocated": model.num_parameters(), "analytic": model.config.num_parameters(),
                    # a few entries for the scatter plot
                    "sample": [wte_now.ravel()[:2000].tolist(), head_now.ravel()[:2000].tolist()]}
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
        ax.set_title(f"{key}, after {tying['steps']} steps: r = {t['after']['correlation']:.4f}",
                     fontsize=10)
        ax.set_xlabel("embedding wte entry")
        ax.set_ylabel("unembedding entry")
    fig.suptitle(f"Parameter counts, and a tied vs an untied '{tying['preset']}' model trained "
                 "from the same weights")
    return fig
