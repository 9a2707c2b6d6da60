"""Studies 2 and 3: what LayerNorm does to a matrix's statistics, and how γ and β set them.

Stds here are population stds (ddof=0), the variance LayerNorm itself divides by; torch.std's
default (ddof=1) reads sqrt(N/(N-1)) higher, e.g. 1.017 for 30 values.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .. import functional as F

SHAPES = ((3, 10), (30, 30))
MU, SIGMA = 2.0, 2.0
# the seed's figures (1-layernorm-stability.md, §4.1.2 table and §5.3), quoted
SEED = {"before_ln": {"mean": 2.31, "std": 1.87}, "after_ln": {"mean": 0.01, "std": 1.02},
        "gamma_3_beta_5": {"mean": "≈ 5", "std": "≈ 3"},
        "per_column": "mean ≈ 0 and std ≈ 1 along the normalised dim, not along the other",
        "whole_tensor": "normalised globally, correlation with the input ≈ 1"}


def _scopes(shape) -> dict:
    # the seed's "per column" is PyTorch's LayerNorm(cols): each row normalised over its columns
    return {"last dim": (shape[-1],), "whole tensor": tuple(shape)}


def normalization_scope(*, shapes=SHAPES, mu: float = MU, sigma: float = SIGMA,
                        seed: int = 0) -> dict:
    """LayerNorm of N(mu, sigma) matrices over the last dim vs over the whole tensor.

    For each shape and scope: the input's and output's global mean/std, the output's mean/std
    along the normalised dims (per row for "last dim", one group for "whole tensor") and along
    the other dim (per column, left alone by "last dim"), and the Pearson correlation between
    input and output entries. x and y are kept for the scatter plot.
    """
    rng = np.random.default_rng(seed)
    out = {"mu": mu, "sigma": sigma, "shapes": {}}
    for shape in shapes:
        x = rng.normal(mu, sigma, size=shape)
        entry = {"shape": list(shape), "x": x.tolist(),
                 "input": {"mean": float(x.mean()), "std": float(x.std())}, "scopes": {}}
        for name, dims in _scopes(shape).items():
            y = F.layer_norm(x, dims)
            groups = y.reshape(-1, int(np.prod(dims)))  # one row per normalised group
            entry["scopes"][name] = {
                "normalized_shape": list(dims), "y": y.tolist(),
                "mean": float(y.mean()), "std": float(y.std()),
                "group_means": groups.mean(axis=1).tolist(),
                "group_stds": groups.std(axis=1).tolist(),
                "column_means": y.mean(axis=0).tolist(),
                "column_stds": y.std(axis=0).tolist(),
                "pearson_r": float(np.corrcoef(x.ravel(), y.ravel())[0, 1]),
            }
        out["shapes"]["×".join(map(str, shape))] = entry
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
    shapes = result["shapes"]
    fig = Figure(figsize=(5.5 * len(shapes), 4.5), layout="constrained")
    for ax, (label, entry) in zip(fig.subplots(1, len(shapes), squeeze=False)[0],
                                  shapes.items()):
        x = np.asarray(entry["x"])
        rows = np.broadcast_to(np.arange(x.shape[0])[:, None], x.shape)
        last, whole = entry["scopes"]["last dim"], entry["scopes"]["whole tensor"]
        # colour = row: each row gets its own affine map, hence the lower correlation
        ax.scatter(x, last["y"], c=rows, cmap="viridis", s=14,
                   label=f"last dim (colour = row), r = {last['pearson_r']:.3f}")
        ax.scatter(x, whole["y"], c="k", marker="x", s=14,
                   label=f"whole tensor, r = {whole['pearson_r']:.3f}")
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_title(f"{label} matrix, N({result['mu']:g}, {result['sigma']:g}²)")
        ax.set_xlabel("input entry")
        ax.set_ylabel("LayerNorm output entry")
        ax.legend(fontsize=8)
    fig.suptitle("LayerNorm over the last dim vs over the whole tensor (r: Pearson with input)")
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
