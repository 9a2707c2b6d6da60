"""Study 9: does LayerNorm make a small GPT converge faster, with less loss oscillation?

The same model trained three ways: with its LayerNorms, with LayerNorm but γ = 1 and β = 0
frozen, and without LayerNorm (norm_variants). For a given seed every variant and learning
rate starts from the same weights and sees the same batches; the held-out loss is measured on
the same fixed batches every `eval_every` steps, so the curves differ by the variant alone.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from .. import data
from . import norm_variants, training

# deeper than 'tiny' (2 layers), where LayerNorm changes little; still a few ms per call
MODEL = {"preset": "tiny", "n_layer": 4, "n_embd": 32}
SETTINGS = {"full": {"steps": 100, "batch": 16, "seq": 32, "eval_every": 5,
                     "lrs": (3e-3, 1e-2, 3e-2, 1e-1), "seeds": (0, 1, 2)},
            "quick": {"steps": 20, "batch": 8, "seq": 32, "eval_every": 5,
                      "lrs": (3e-3, 1e-1), "seeds": (0,)}}
VARIANTS = {"layernorm": "LayerNorm", "frozen": "LayerNorm, γ/β frozen at 1/0",
            "none": "no LayerNorm"}
EVAL_BATCHES, EVAL_SEED = 2, 1234
# note 1 §4.1.4 and §7.1, quoted (it gives no figures for this claim)
NOTE = {"with LayerNorm (§4.1.4)":
        "hội tụ nhanh hơn; dao động loss giảm đáng kể (converges faster; loss oscillation "
        "markedly smaller)",
        "without LayerNorm (§4.1.4)":
        "gặp khó khăn trong giai đoạn đầu huấn luyện, loss dao động mạnh, đôi khi không hội tụ "
        "(struggles early in training, the loss oscillates strongly, sometimes it does not "
        "converge)",
        "in language-model training (§7.1)":
        "LayerNorm giúp giảm loss dao động, tránh collapse, ổn định logits (reduces loss "
        "oscillation, avoids collapse, stabilises the logits)"}


def oscillation(losses) -> float:
    """Mean rise per interval over the second half of a loss curve: the mean of
    max(0, L[k+1] - L[k]) for k from len//2 on; 0 for a curve that never goes up."""
    tail = np.asarray(losses, dtype=np.float64)[len(losses) // 2:]
    return float(np.mean(np.maximum(0.0, np.diff(tail)))) if tail.size > 1 else math.nan


def eval_batches(batches: int = EVAL_BATCHES, seq: int = 32) -> list[tuple]:
    """Fixed held-out batches (the corpus's validation split), the same for every run."""
    _, val = data.split(data.stdlib_corpus(training.CORPUS_BYTES))
    rng = np.random.default_rng(EVAL_SEED)
    return [data.get_batch(val, 16, seq, rng) for _ in range(batches)]


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def train_variant(variant: str, *, lr: float, seed: int, steps: int, batch: int, seq: int,
                  eval_every: int, evals=None, on_step: Callable[[int], None] | None = None,
                  model: dict = MODEL) -> dict:
    """One training run: train losses per step, held-out loss every eval_every steps (and at
    step 0), the oscillation of the held-out curve, and digests of the initial weights and of
    every batch seen (equal digests: the same start and the same data)."""
    from ..gpt import GPT, GPTConfig

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    cfg = GPTConfig.preset(model["preset"], **{k: v for k, v in model.items() if k != "preset"})
    gpt = GPT(cfg, seed=seed)
    init = _digest(gpt.parameters().values())
    layer_norm = variant != "none"
    evals = eval_batches(seq=seq) if evals is None else evals
    seen = hashlib.sha256()

    def grad_fn(m, idx, targets):
        seen.update(idx.tobytes())
        return norm_variants.loss_and_grads(m, idx, targets, layer_norm=layer_norm)

    def held_out() -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.mean([norm_variants.forward(gpt, x, y, layer_norm=layer_norm)[0]
                                  for x, y in evals]))

    eval_steps, eval_loss = [0], [held_out()]

    def after(step):
        if step % eval_every == 0 or step == steps:
            eval_steps.append(step)
            eval_loss.append(held_out())
        if on_step:
            on_step(step)

    keep = norm_variants.without_layer_norm_parameters if variant == "frozen" else None
    run = training.train(gpt, steps=steps, batch=batch, seq=seq, lr=lr, seed=seed,
                         grad_fn=grad_fn, keep=keep, on_step=after)
    finite = all(math.isfinite(v) for v in run["losses"] + eval_loss)
    # diverged: a loss overflowed, or the held-out loss ended above where it started
    diverged = not finite or eval_loss[-1] >= eval_loss[0]
    ln = {k: float(np.abs(v - (1.0 if k.endswith("weight") else 0.0)).max())
          for k, v in gpt.parameters().items() if k.endswith(norm_variants.LN_SUFFIXES)}
    return {"variant": variant, "lr": lr, "seed": seed, "train_loss": run["losses"],
            "eval_steps": eval_steps, "eval_loss": eval_loss, "steps_run": run["steps_run"],
            "mean_eval_loss": float(np.mean(eval_loss)) if finite else math.inf,
            "final_eval_loss": eval_loss[-1] if finite else math.inf,
            "oscillation": oscillation(eval_loss) if finite else math.inf,
            "diverged": diverged, "init_digest": init, "data_digest": seen.hexdigest()[:16],
            "max_ln_change": max(ln.values()), "seconds": run["seconds"]}


def run(*, mode: str = "full", settings: dict | None = None, progress=None,
        model: dict = MODEL) -> dict:
    """Every variant × learning rate × seed of SETTINGS[mode] (or `settings`), with a summary
    per learning rate. progress(text) hears each run and step."""
    s = settings or SETTINGS[mode]
    evals = eval_batches(seq=s["seq"])
    combos = [(lr, seed, v) for lr in s["lrs"] for seed in s["seeds"] for v in VARIANTS]
    runs = []
    for i, (lr, seed, variant) in enumerate(combos):
        def on_step(step, i=i, lr=lr, seed=seed, variant=variant):
            if progress:
                progress(f"run {i + 1}/{len(combos)}: {VARIANTS[variant]}, lr {lr:g}, "
                         f"seed {seed}, step {step}/{s['steps']}")
        runs.append(train_variant(variant, lr=lr, seed=seed, steps=s["steps"],
                                  batch=s["batch"], seq=s["seq"], eval_every=s["eval_every"],
                                  evals=evals, on_step=on_step, model=model))
    return {"mode": mode, "settings": {**s, "lrs": list(s["lrs"]), "seeds": list(s["seeds"])},
            "model": model, "runs": runs, "summary": summarize(runs, s["lrs"], s["seeds"])}


def summarize(runs: list[dict], lrs, seeds) -> list[dict]:
    """Per learning rate: each variant's spread over seeds, and the note's claim checked seed
    by seed (LayerNorm vs none: lower mean held-out loss = faster; lower oscillation, or the
    other run diverged = calmer)."""
    by = {(r["lr"], r["seed"], r["variant"]): r for r in runs}
    out = []
    for lr in lrs:
        row = {"lr": lr, "variants": {}}
        for v in VARIANTS:
            rs = [by[lr, s, v] for s in seeds]
            row["variants"][v] = {
                key: [r[key] for r in rs] for key in ("mean_eval_loss", "final_eval_loss",
                                                      "oscillation", "diverged")}
        pairs = [(by[lr, s, "layernorm"], by[lr, s, "none"]) for s in seeds]
        row["faster_seeds"] = sum(a["mean_eval_loss"] < b["mean_eval_loss"] for a, b in pairs)
        row["calmer_seeds"] = sum(_calmer(a, b) for a, b in pairs)
        row["equal_oscillation_seeds"] = sum(a["diverged"] == b["diverged"]
                                             and a["oscillation"] == b["oscillation"]
                                             for a, b in pairs)
        row["seeds"] = len(pairs)
        row["held"] = ("yes" if row["faster_seeds"] == row["calmer_seeds"] == len(pairs) else
                       "no" if row["faster_seeds"] == row["calmer_seeds"] == 0 else "partly")
        out.append(row)
    return out


def _calmer(a: dict, b: dict) -> bool:
    """a oscillated less than b; a run that diverged is the less stable of two whatever its
    curve's last half does (falling back from 1e10 counts as no rise)."""
    if a["diverged"] != b["diverged"]:
        return b["diverged"]
    return a["oscillation"] < b["oscillation"]


def plot(result: dict) -> Figure:
    lrs = result["settings"]["lrs"]
    fig = Figure(figsize=(max(8, 4 * len(lrs)), 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    axes = dict(zip([f"lr{i}" for i in range(len(lrs))], top.subplots(1, len(lrs),
                                                                       squeeze=False)[0]))
    axes.update(zip(("speed", "osc"), bottom.subplots(1, 2)))
    start = math.log(256)    # a byte model's loss before it learns anything (uniform)
    for i, lr in enumerate(lrs):
        ax = axes[f"lr{i}"]
        for j, (v, label) in enumerate(VARIANTS.items()):
            rs = [r for r in result["runs"] if r["lr"] == lr and r["variant"] == v]
            for k, r in enumerate(rs):
                ys = [min(y, 2 * start) if math.isfinite(y) else 2 * start
                      for y in r["eval_loss"]]
                ax.plot(r["eval_steps"], ys, color=f"C{j}", lw=1, alpha=0.8,
                        label=f"{label}" if k == 0 else None)
        ax.set_ylim(top=2 * start)
        ax.set_title(f"lr = {lr:g}", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out loss (nats; clipped at 2·ln 256)")
        ax.legend(fontsize=7)
    summary = result["summary"]
    for key, name, ylabel in (("mean_eval_loss", "speed", "mean held-out loss over the run"),
                              ("oscillation", "osc", "oscillation (mean rise per interval)")):
        ax = axes[name]
        for j, (v, label) in enumerate(VARIANTS.items()):
            for row in summary:
                x = row["lr"] * 1.12 ** (j - 1)          # variants side by side
                for y, bad in zip(row["variants"][v][key], row["variants"][v]["diverged"]):
                    if math.isfinite(y):
                        ax.plot(x, y, "x" if bad else "o", color=f"C{j}", ms=5, alpha=0.8)
            ax.plot([], [], "o", color=f"C{j}", label=label)
        ax.plot([], [], "x", color="gray", label="diverged")
        ax.set_xscale("log")
        # oscillation is 0 for a curve that never rises: linear near 0, log beyond
        if name == "speed":
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(bottom=0)
        ax.set_xlabel("learning rate (one mark per seed)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    m = result["model"]
    fig.suptitle(f"'{m['preset']}' with {m['n_layer']} layers, C = {m['n_embd']}: with, with "
                 "frozen, and without LayerNorm\n(same initial weights and batches per seed)")
    return fig
