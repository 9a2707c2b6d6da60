"""Studies 4 and 5 (note 2): why attention divides QKᵀ by sqrt(d), and what that does to softmax.

Each entry of QKᵀ is a sum of d products of independent N(0, 1) numbers, so its variance is d;
dividing by sqrt(d) brings the std back to 1, which is softmax at temperature sqrt(d).
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from .. import functional as F

# note 2's figures (§3.1, §3.2, §4.2, §5.3), quoted
NOTE = {"std_qk_50": "σ(QKᵀ) ≈ sqrt(50) ≈ 7",
        "sweep": "50×n, n = 2…100: σ(QKᵀ) matches sqrt(n) almost perfectly",
        "softmax": "before scaling a few tokens take most probability, most ≈ 0; "
                   "after scaling the distribution is more even",
        "temperature": "scaling plays the same role as the sampling temperature T"}


def _qk(m: int, d: int, rng) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((m, d)), rng.standard_normal((m, d))


def qk_std(*, m: int = 50, d: int = 50, trials: int = 1, seed: int = 0) -> dict:
    """std of Q, K (m×d, N(0, 1)) and of QKᵀ, beside sqrt(d); `trials` independent draws
    pooled (one draw, as in the note, scatters by up to about 10% around sqrt(d))."""
    rng = np.random.default_rng(seed)
    qs, ks = zip(*(_qk(m, d, rng) for _ in range(trials)))
    q, k = np.stack(qs), np.stack(ks)                               # (trials, m, d)
    s = q @ np.swapaxes(k, -1, -2)                                  # (trials, m, m)
    return {"m": m, "d": d, "trials": trials, "std_q": float(q.std()), "std_k": float(k.std()),
            "std_qk": float(s.std()), "sqrt_d": math.sqrt(d),
            "std_qk_scaled": float((s / math.sqrt(d)).std())}


def qk_std_sweep(*, m: int = 50, dims=range(2, 101), trials: int = 1, seed: int = 0) -> dict:
    """std(QKᵀ) and std(QKᵀ / sqrt(d)) for Q, K of m×d at each d."""
    rng = np.random.default_rng(seed)
    rows = [qk_std(m=m, d=d, trials=trials, seed=int(rng.integers(2**32))) for d in dims]
    return {"m": m, "trials": trials, "d": [r["d"] for r in rows],
            "std_qk": [r["std_qk"] for r in rows], "sqrt_d": [r["sqrt_d"] for r in rows],
            "std_qk_scaled": [r["std_qk_scaled"] for r in rows]}


def _entropy(p: np.ndarray, logp: np.ndarray) -> np.ndarray:
    return -(np.where(p > 0, p * logp, 0.0)).sum(axis=-1)           # nats, 0·log 0 = 0


def softmax_scaling(*, m: int = 50, d: int = 50, temperatures=None, seed: int = 0) -> dict:
    """softmax(QKᵀ) vs softmax(QKᵀ / sqrt(d)): probabilities, -log-softmax, per-row max and
    entropy, and a sweep of softmax's temperature on the unscaled scores."""
    q, k = _qk(m, d, np.random.default_rng(seed))
    scores = q @ k.T                                                # (m, m)
    root = math.sqrt(d)
    versions = {"raw": scores, "scaled": scores / root}
    out = {"m": m, "d": d, "sqrt_d": root}
    for name, z in versions.items():
        p, logp = F.softmax(z, axis=-1), F.log_softmax(z, axis=-1)
        out[name] = {"p": p.tolist(), "neg_log_p": (-logp).tolist(),
                     "row_max_p": p.max(axis=-1).tolist(),
                     "row_entropy": _entropy(p, logp).tolist(),
                     "score_std": float(z.std())}
    # dividing the scores by sqrt(d) is softmax at temperature sqrt(d)
    p_temp = F.softmax(scores, axis=-1, temperature=root)
    out["max_abs_diff_scaled_vs_temperature"] = float(
        np.abs(p_temp - np.asarray(out["scaled"]["p"])).max())
    grid = temperatures or [float(f"{t:.4g}") for t in np.geomspace(0.25, 64, 17)]
    temps = sorted({*grid, 1.0, root})
    sweep = {"temperature": temps, "mean_max_p": [], "mean_entropy": []}
    for t in temps:
        p, logp = F.softmax(scores, -1, t), F.log_softmax(scores, -1, t)
        sweep["mean_max_p"].append(float(p.max(axis=-1).mean()))
        sweep["mean_entropy"].append(float(_entropy(p, logp).mean()))
    out["temperature_sweep"] = sweep
    out["uniform_entropy"] = math.log(m)
    return out


def plot_qk_std(single: dict, sweep: dict) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.plot(sweep["d"], sweep["std_qk"], "o", ms=3, label="measured std(QKᵀ)")
    a.plot(sweep["d"], sweep["sqrt_d"], "k-", label="sqrt(d)")
    a.plot(single["d"], single["std_qk"], "r*", ms=12,
           label=f"50×50: {single['std_qk']:.2f} vs sqrt(50) = {single['sqrt_d']:.2f}")
    a.set_xlabel("feature dim d (Q, K are 50×d, entries N(0, 1))")
    a.set_ylabel("std of QKᵀ entries")
    a.set_title("The dot product's spread grows as sqrt(d)")
    a.legend()
    b.plot(sweep["d"], sweep["std_qk_scaled"], "o", ms=3, color="C2",
           label="measured std(QKᵀ / sqrt(d))")
    b.axhline(1.0, color="k", label="1")
    b.set_ylim(0, 2)
    b.set_xlabel("feature dim d")
    b.set_ylabel("std of QKᵀ / sqrt(d)")
    b.set_title("Dividing by sqrt(d) keeps it at 1")
    b.legend()
    return fig


def plot_softmax(result: dict) -> Figure:
    raw, scaled = result["raw"], result["scaled"]
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    (a, b), (c, e) = fig.subplots(2, 2)
    p_raw, p_scaled = np.ravel(raw["p"]), np.ravel(scaled["p"])
    keep = (p_raw > 0) & (p_scaled > 0)  # log axes: drop probabilities that underflowed to 0
    a.loglog(p_raw[keep], p_scaled[keep], ".", ms=2, alpha=0.5)
    lim = [min(p_raw[keep].min(), p_scaled[keep].min()), 1]
    a.plot(lim, lim, "k--", lw=0.8, label="y = x")
    a.set_xlabel("softmax(QKᵀ)")
    a.set_ylabel("softmax(QKᵀ / sqrt(d))")
    a.set_title("Probabilities: scaling lifts the small ones")
    a.legend()
    b.plot(np.ravel(raw["neg_log_p"]), np.ravel(scaled["neg_log_p"]), ".", ms=2, alpha=0.5)
    b.set_xlabel("−log softmax(QKᵀ)")
    b.set_ylabel("−log softmax(QKᵀ / sqrt(d))")
    b.set_title("Negative log-softmax")
    c.plot(raw["row_entropy"], raw["row_max_p"], "o", ms=4, label="QKᵀ")
    c.plot(scaled["row_entropy"], scaled["row_max_p"], "s", ms=4, label="QKᵀ / sqrt(d)")
    c.axvline(result["uniform_entropy"], color="gray", ls=":", label="uniform (log m)")
    c.set_xlabel("entropy of the row (nats)")
    c.set_ylabel("largest probability in the row")
    c.set_title(f"Per row ({result['m']} rows)")
    c.legend()
    sw = result["temperature_sweep"]
    e.semilogx(sw["temperature"], sw["mean_max_p"], "o-", label="mean max probability")
    e.set_xlabel("softmax temperature T on QKᵀ (log scale)")
    e.set_ylabel("mean max probability")
    e2 = e.twinx()
    e2.semilogx(sw["temperature"], sw["mean_entropy"], "s-", color="C1", label="mean entropy")
    e2.set_ylabel("mean entropy (nats)")
    marks = ((1.0, " T = 1:\n QKᵀ"), (result["sqrt_d"], " T = sqrt(d):\n QKᵀ / sqrt(d)"))
    for t, text in marks:
        e.axvline(t, color="k", ls="--", lw=0.8)
        e.text(t, 0.97, text, fontsize=8, va="top", transform=e.get_xaxis_transform())
    e.set_title("Temperature sweep: low T sharpens, high T flattens")
    handles = e.get_legend_handles_labels()[0] + e2.get_legend_handles_labels()[0]
    e.legend(handles, [h.get_label() for h in handles], loc="upper center",
             bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.suptitle(f"Softmax of attention scores, Q, K of {result['m']}×{result['d']}, N(0, 1)")
    return fig
