"""Studies 2 and 3 (note 1): what LayerNorm does to a matrix's statistics, read both ways the
note's "per column" can mean, and how γ and β set them.

Stds here are population stds (ddof=0), the variance LayerNorm itself divides by; torch.std's
default (ddof=1) reads sqrt(N/(N-1)) higher, e.g. 1.017 for 30 values.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from .. import functional as F

SHAPES = ((3, 10), (30, 30))
# note 1's method draws N(0, 1) (§3.3.1); its own table (§4.1.2) reads like N(2, 2²)
LAWS = {"N(0, 1)": (0.0, 1.0), "N(2, 2²)": (2.0, 2.0)}
MU, SIGMA = 2.0, 2.0          # study 3's input
SCOPES = {"last dim": "each row over its columns: normalized_shape = (cols,), LayerNorm's "
                      "and nn.LayerNorm(cols)'s reading",
          "first dim": "each column over its rows: the note's \"per column\" as written "
                       "(LayerNorm of the transpose)",
          "whole tensor": "all entries together: normalized_shape = (rows, cols)"}
# note 1's figures (§4.1.2 table, §5.2, §5.3), quoted
NOTE = {"before_ln": {"mean": 2.31, "std": 1.87}, "after_ln": {"mean": 0.01, "std": 1.02},
        "gamma_3_beta_5": {"mean": "≈ 5", "std": "≈ 3"},
        "per_column": "Mean ≈ 0 theo cột, Std ≈ 1 theo cột, không chuẩn hóa theo hàng "
                      "(mean ≈ 0 per column, std ≈ 1 per column, rows not normalised)",
        "whole_tensor": "chuẩn hóa toàn cục, hệ số tương quan ≈ 1 (normalised globally, "
                        "correlation ≈ 1)",
        "method_input": "A_ij ~ N(0, 1), 30×30 and 3×10 (§3.3.1)"}


def _normalise(x, scope: str):
    if scope == "last dim":
        return F.layer_norm(x, (x.shape[-1],))
    if scope == "first dim":
        return F.layer_norm(x.T, (x.shape[0],)).T   # LayerNorm normalises trailing dims only
    return F.layer_norm(x, tuple(x.shape))


def _stats(y, x) -> dict:
    return {"mean": float(y.mean()), "std": float(y.std()),
            "row_means": y.mean(axis=1).tolist(), "row_stds": y.std(axis=1).tolist(),
            "column_means": y.mean(axis=0).tolist(), "column_stds": y.std(axis=0).tolist(),
            "pearson_r": float(np.corrcoef(x.ravel(), y.ravel())[0, 1])}


def normalization_scope(*, shapes=SHAPES, laws=LAWS, seed: int = 0) -> dict:
    """LayerNorm of random matrices over the last dim, the first dim and the whole tensor.

    For each input law, shape and scope: the output's row and column means and stds, its
    global mean/std and the Pearson correlation of input and output entries; x and each y
    are kept for the plot. `note_input_check` measures how far the note's "before LN" mean
    lies from what its stated N(0, 1) input gives (in standard errors of the mean).
    """
    rng = np.random.default_rng(seed)
    out = {"laws": {}, "scopes": SCOPES}
    for law, (mu, sigma) in laws.items():
        entry = {"mu": mu, "sigma": sigma, "shapes": {}}
        for shape in shapes:
            x = rng.normal(mu, sigma, size=shape)
            e = {"shape": list(shape), "x": x.tolist(), "input": _stats(x, x), "scopes": {}}
            for scope in SCOPES:
                y = _normalise(x, scope)
                e["scopes"][scope] = {"y": y.tolist(), **_stats(y, x)}
            entry["shapes"]["×".join(map(str, shape))] = e
        out["laws"][law] = entry
    out["note_input_check"] = {
        "×".join(map(str, shape)): NOTE["before_ln"]["mean"] * math.sqrt(math.prod(shape))
        for shape in shapes}
    return out


def gamma_beta(*, gammas=(1.0, 2.0, 3.0), betas=(0.0, 2.0, 5.0), shape=(30, 30),
               mu: float = MU, sigma: float = SIGMA, seed: int = 0, bins: int = 80) -> dict:
    """LayerNorm over the last dim, weight = γ and bias = β everywhere: mean ≈ β, std ≈ γ.

    Histograms of every output share one set of bin edges, for the plot.
    """
    x = np.random.default_rng(seed).normal(mu, sigma, size=shape)
    ys = {}
    for g in gammas:
        for b in betas:
            w, bias = np.full(shape[-1], g, dtype=x.dtype), np.full(shape[-1], b, dtype=x.dtype)
            ys[(g, b)] = F.layer_norm(x, (shape[-1],), w, bias)
    edges = np.linspace(min(y.min() for y in ys.values()), max(y.max() for y in ys.values()),
                        bins + 1)
    table = [{"gamma": float(g), "beta": float(b), "mean": float(y.mean()), "std": float(y.std()),
              "hist": np.histogram(y, bins=edges)[0].tolist()} for (g, b), y in ys.items()]
    return {"shape": list(shape), "mu": mu, "sigma": sigma, "bin_edges": edges.tolist(),
            "table": table}


def plot_scope(result: dict) -> Figure:
    laws = result["laws"]
    shapes = list(next(iter(laws.values()))["shapes"])
    fig = Figure(figsize=(5.2 * len(shapes), 3.6 * len(laws)), layout="constrained")
    axes = fig.subplots(len(laws), len(shapes), squeeze=False)
    for axrow, (law, entry) in zip(axes, laws.items()):
        for ax, label in zip(axrow, shapes):
            e = entry["shapes"][label]
            for i, (scope, st) in enumerate(e["scopes"].items()):
                ax.plot([i - 0.12] * len(st["row_means"]), st["row_means"], "o", color="C0",
                        ms=4, alpha=0.6, label="row means" if i == 0 else None)
                ax.plot([i + 0.12] * len(st["column_means"]), st["column_means"], "x",
                        color="C3", ms=4, alpha=0.6, label="column means" if i == 0 else None)
            ax.axhline(0, color="gray", lw=0.5)
            ax.set_xticks(range(len(e["scopes"])), [f"{scope}\nr = {st['pearson_r']:.3f}"
                                                    for scope, st in e["scopes"].items()])
            ax.set_title(f"{label} matrix, {law}", fontsize=10)
            ax.set_ylabel("mean of the LayerNorm output")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Row and column means after LayerNorm over the last dim, the first dim or "
                 "the whole tensor\n(r: Pearson correlation of output with input)")
    return fig


def plot_gamma_beta(result: dict) -> Figure:
    edges = np.asarray(result["bin_edges"])
    gammas = sorted({r["gamma"] for r in result["table"]})
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, len(gammas), sharey=True)
    for ax, g in zip(axes, gammas):
        for i, r in enumerate(r for r in result["table"] if r["gamma"] == g):
            ax.stairs(r["hist"], edges, color=f"C{i}", fill=True, alpha=0.35,
                      label=f"β = {r['beta']:g}: mean {round(r['mean'], 2) + 0.0:.2f}, "
                            f"std {r['std']:.2f}")  # + 0.0: no "-0.00"
            ax.axvline(r["beta"], color=f"C{i}", ls="--", lw=1)
        ax.set_title(f"γ = {g:g}")
        ax.set_xlabel("output value")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("count")
    fig.suptitle(f"LayerNorm output of a {result['shape'][0]}×{result['shape'][1]} matrix: "
                 "β sets the mean (dashed), γ the spread")
    return fig
