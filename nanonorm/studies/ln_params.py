"""Study 6 (note 2 §4.3): the distribution of every LayerNorm gain γ and shift β of a GPT-2.

With `--checkpoint` the model is loaded from disk; else the pretrained GPT-2 when a local
Hugging Face cache holds it; else a small model trained here for a bounded time, so that γ and
β have moved from their initial 1 and 0 (a freshly initialised model would show two bars).
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..backend import to_numpy
from . import training

LN_MODULES = ("ln_1", "ln_2", "ln_f")
# note 2 §4.3 (trained GPT-2), quoted
NOTE = {"gamma": "mostly in 0.2–0.4", "beta": "concentrated around 0",
        "reading": "LayerNorm mainly shrinks activations"}
HF_REPOS = ("models--gpt2", "models--openai-community--gpt2")
HUB = ("huggingface.co", 443)
# the model trained without a checkpoint (nanonorm train's mini preset at its batch size)
TRAINING = {"full": {"preset": "mini", "steps": 150, "batch": 8, "seq": 64, "lr": 1e-3,
                     "max_seconds": 150.0},
            "quick": {"preset": "tiny", "steps": 40, "batch": 8, "seq": 32, "lr": 3e-3,
                      "max_seconds": 20.0}}


def hf_cache_dirs() -> list[Path]:
    """Where a Hugging Face cache would hold GPT-2, in the order the hub library looks."""
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    home = Path(os.environ.get("HF_HOME", Path("~/.cache/huggingface").expanduser()))
    return [home / "hub"]


def find_pretrained() -> dict:
    """The local GPT-2 checkpoint if a Hugging Face cache holds one, where it looked, and
    whether the hub answers (a 3 s TCP probe; nothing is downloaded)."""
    looked = [d / name for d in hf_cache_dirs() for name in HF_REPOS]
    found = next((str(p) for p in looked if (p / "snapshots").is_dir()), None)
    return {"found": found, "looked_in": [str(p) for p in looked],
            "hub": None if found else hub_reachable()}


def hub_reachable(address=HUB, timeout: float = 3.0) -> str:
    """'reachable' or 'not reachable: why'; the DNS lookup is bounded too (in a thread)."""
    answer = ["not reachable: no answer within 3 s"]

    def probe():
        try:
            socket.create_connection(address, timeout=timeout).close()
            answer[0] = "reachable"
        except OSError as e:
            answer[0] = f"not reachable: {e}"
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return answer[0]


def load_parameters(checkpoint=None, *, mode: str = "full", seed: int = 0,
                    progress=None, pretrained: dict | None = None) -> tuple[dict, dict]:
    """(parameters, source): the checkpoint's, the cached pretrained GPT-2's, or those of a
    model trained here per TRAINING[mode]; source says which, and how it was made."""
    from ..gpt import GPT, GPTConfig

    if checkpoint is not None:
        model = GPT.from_pretrained(checkpoint)
        return model.parameters(), {"kind": "checkpoint", "label": f"checkpoint {checkpoint} "
                                                                   f"({model.config})"}
    pretrained = find_pretrained() if pretrained is None else pretrained
    if pretrained["found"]:
        model = GPT.from_pretrained(pretrained["found"])
        return model.parameters(), {"kind": "pretrained", "pretrained": pretrained,
                                    "label": f"pretrained GPT-2 from {pretrained['found']}"}
    t = TRAINING[mode]
    config = GPTConfig.preset(t["preset"])
    model = GPT(config, seed=seed)
    tell = (lambda step: progress(f"training '{t['preset']}': step {step}/{t['steps']}")
            ) if progress else None
    run = training.train(model, steps=t["steps"], batch=t["batch"], seq=t["seq"], lr=t["lr"],
                         seed=seed, on_step=tell, max_seconds=t["max_seconds"])
    label = (f"'{t['preset']}' preset ({config.num_parameters():,} parameters) trained here "
             f"for {run['steps_run']} steps")
    return model.parameters(), {"kind": "trained", "pretrained": pretrained, "label": label,
                                "training": {**t, **{k: run[k] for k in (
                                    "steps_run", "seconds", "stopped_by_time")},
                                    "first_loss": run["losses"][0],
                                    "last_loss": run["losses"][-1]}}


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
        init = 1.0 if kind == "gamma" else 0.0
        out[kind] = {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()),
                     "min": lo, "max": hi, "max_change": float(np.abs(v - init).max()),
                     "percentiles": dict(zip(("p5", "p25", "p50", "p75", "p95"),
                                             np.percentile(v, [5, 25, 50, 75, 95]).tolist())),
                     "hist": counts.tolist(), "bin_edges": edges.tolist()}
        # the note's claim about this kind, measured on this model
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
            ax.axvspan(0.2, 0.4, color="orange", alpha=0.2,
                       label="note 2: trained GPT-2's γ mostly 0.2–0.4")
            ax.axvline(1.0, color="gray", ls=":", label="initial γ = 1")
        else:
            ax.axvline(0.0, color="orange", ls="--", label="note 2: trained GPT-2's β around 0 "
                                                           "(and the initial β)")
        ax.legend(fontsize=8)
    fig.suptitle(f"LayerNorm parameters of: {result['label']}", fontsize=10)
    return fig
