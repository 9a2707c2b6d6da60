"""Study 1 (note 1): repeated products A_k = s · A_{k-1} B_k vanish or explode; a LayerNorm
after each product keeps them bounded.

Every scale s reuses the same A_0 and B_1..B_steps, so the curves differ by s alone (without
LayerNorm and before any overflow, norm_s(k) = s^k · norm_1(k) exactly up to rounding).
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from .. import functional as F

SCALES = (0.5, 1.0, 1.5, 2.0)
B_LAWS = {"scaled": "N(0, 1/n)", "raw": "N(0, 1)"}
# what note 1 (§5.1 and §4.1.1) reports, quoted
NOTE = {"s < 1": "norm -> 0 (suy giảm, underflow)", "s = 1": "oscillates (dao động)",
        "s > 1": "norm -> inf (bùng nổ, overflow)"}


def matrix_chain(*, n: int = 30, steps: int = 50, scales=SCALES, b: str = "scaled",
                 dtype: str = "float32", layer_norm: bool = False, seed: int = 0) -> dict:
    """Frobenius norm of A_0..A_steps for each scale s.

    b: "scaled" draws B_k ~ N(0, 1/n) (each product keeps the norm on average, so s decides),
    "raw" draws B_k ~ N(0, 1) (each product multiplies the norm by about sqrt(n)).
    The chain runs in `dtype`, so overflow to inf and underflow to 0 are that dtype's;
    norms are taken in float64 so that squaring for the norm adds no overflow of its own.
    layer_norm: A_k = LayerNorm(s · A_{k-1} B_k) over the last dim, without γ/β.
    """
    if b not in B_LAWS:
        raise ValueError(f"b must be one of {tuple(B_LAWS)}, got {b!r}")
    rng = np.random.default_rng(seed)
    b_std = 1.0 / math.sqrt(n) if b == "scaled" else 1.0
    a0 = rng.standard_normal((n, n)).astype(dtype)
    bs = (rng.standard_normal((steps, n, n)) * b_std).astype(dtype)
    info = np.finfo(dtype)
    out = {"n": n, "steps": steps, "b": B_LAWS[b], "dtype": dtype, "layer_norm": layer_norm,
           "dtype_max": float(info.max), "dtype_smallest_subnormal": float(info.smallest_subnormal),
           "scales": {}}
    for s in scales:
        norms = _run_chain(a0, bs, np.asarray(s, dtype=dtype), n, layer_norm)
        out["scales"][str(s)] = {"s": s, "norms": norms, **_regime(norms)}
    return out


def _run_chain(a0, bs, s, n, layer_norm) -> list[float]:
    a, norms = a0, [_norm(a0)]
    # overflow, underflow and inf - inf are what this study shows: silence their warnings
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for b in bs:
            a = s * (a @ b)
            if layer_norm:
                a = F.layer_norm(a, (n,))
            norms.append(_norm(a))
    return norms


def _norm(a) -> float:
    value = float(np.linalg.norm(a.astype(np.float64)))
    return value if math.isfinite(value) else math.inf  # inf or nan: the chain overflowed


def _regime(norms: list[float]) -> dict:
    """First overflow/underflow step and the geometric mean growth per step while finite."""
    overflow = next((k for k, v in enumerate(norms) if v == math.inf), None)
    underflow = next((k for k, v in enumerate(norms) if v == 0.0), None)
    ok = [v for v in norms if 0.0 < v < math.inf]
    growth = (ok[-1] / ok[0]) ** (1.0 / (len(ok) - 1)) if len(ok) > 1 else None
    return {"overflow_step": overflow, "underflow_step": underflow, "growth_per_step": growth,
            "final_norm": norms[-1], "max_finite_norm": max(ok, default=None),
            "min_nonzero_norm": min(ok, default=None)}


def run(*, seed: int = 0) -> dict:
    """The four panels of the report: the note's claim, the raw case, half precision, LayerNorm."""
    return {
        "scaled_float32": matrix_chain(b="scaled", seed=seed),
        "raw_float32": matrix_chain(b="raw", seed=seed),
        "scaled_float16": matrix_chain(b="scaled", dtype="float16", seed=seed),
        "raw_float32_layernorm": matrix_chain(b="raw", layer_norm=True, seed=seed),
    }


def plot(results: dict) -> Figure:
    fig = Figure(figsize=(11, 8), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, chain) in zip(axes, results.items()):
        _plot_chain(ax, chain)
    fig.suptitle("Repeated products $A_k = s\\,A_{k-1}B_k$ (30×30): Frobenius norm per step")
    return fig


def _plot_chain(ax, chain: dict) -> None:
    ln = " + LayerNorm after each product" if chain["layer_norm"] else ""
    ax.set_title(f"$B_k \\sim$ {chain['b']}, {chain['dtype']}{ln}", fontsize=10)
    ax.set_yscale("log")
    dt = chain["dtype"]
    ax.axhline(chain["dtype_max"], color="red", lw=0.8, ls=":", label=f"{dt} largest value")
    ax.axhline(chain["dtype_smallest_subnormal"], color="blue", lw=0.8, ls=":",
               label=f"{dt} smallest subnormal")
    edge = ax.get_xaxis_transform()  # x in steps, y in axes fraction: markers sit on the frame
    for i, (label, r) in enumerate(chain["scales"].items()):
        color = f"C{i}"
        ks = [k for k, v in enumerate(r["norms"]) if 0.0 < v < math.inf]
        ax.plot(ks, [r["norms"][k] for k in ks], color=color, label=f"s = {label}")
        if r["overflow_step"] is not None:
            ax.plot(r["overflow_step"], 0.97, "^", color=color, ms=10, mec="k", transform=edge)
        if r["underflow_step"] is not None:
            ax.plot(r["underflow_step"], 0.03, "v", color=color, ms=10, mec="k", transform=edge)
    ax.plot([], [], "^", color="gray", mec="k", label="overflow: an entry became inf")
    ax.plot([], [], "v", color="gray", mec="k", label="underflow: every entry became 0")
    ax.set_xlabel("step k")
    ax.set_ylabel("$\\|A_k\\|_F$ (log scale)")
    ax.legend(fontsize=7, loc="best")
