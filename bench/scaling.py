"""How cost grows with work (`python -m bench --scaling`): causal attention forward+backward at
T = 256 ... 4096 and the GPT-2 small training step at B = 1 ... 8 (T = 256) and T = 128 ... 1024
(B = 1), on the Numba kernels; time and peak memory per point, the log-log slope of each sweep
beside its ideal, as a table and a plot.

Peak memory is what NumPy allocated during one call above what existed before it, traced with
tracemalloc (NumPy reports its buffers to it; Numba's own scratch inside a kernel is not
counted), measured on a call of its own so that tracing never slows a timed one. Ideal slopes:
attention's time grows as T² (causal scores) and its memory as T (only the row log-sum-exp is
kept, never (T, T)); the step's time grows as B, and as T plus attention's T² share.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np

import nanonorm

from .timing import median_time

ATTENTION_T = (256, 512, 1024, 2048, 4096)
ATTENTION_T_QUICK = (16, 32, 64)
HEADS, HEAD_SIZE = 12, 64
STEP_B, STEP_T = (1, 2, 4, 8), (128, 256, 512, 1024)
STEP_QUICK_B, STEP_QUICK_T = (1, 2), (8, 16)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def attention_rows(quick: bool = False, reps: int = 3) -> list[dict]:
    from nanonorm import functional as F
    heads, d = (2, 8) if quick else (HEADS, HEAD_SIZE)
    rows = []
    for t in ATTENTION_T_QUICK if quick else ATTENTION_T:
        rng = np.random.default_rng(0)
        q, k, v = (rng.standard_normal((1, heads, t, d), np.float32) for _ in range(3))
        dy = rng.standard_normal((1, heads, t, d), np.float32)

        def call():
            _, cache = F.scaled_dot_product_attention_forward(q, k, v, causal=True)
            F.scaled_dot_product_attention_backward(dy, cache)
        with nanonorm.use_impl("numba"):
            call()                                              # compile, warm
            seconds = median_time(call, reps)[0]
            peak = _peak_bytes(call)
        flops = 3.5 * 2 * heads * t * t * d                     # the bench's fwd+bwd model
        rows.append(dict(sweep="attention", B=1, H=heads, T=t, d=d, seconds=seconds,
                         GFLOPps=flops / seconds / 1e9, peak_MiB=peak / 2**20))
    return rows


def step_rows(quick: bool = False, reps: int = 2) -> list[dict]:
    from nanonorm.gpt import GPT, GPTConfig
    cfg = GPTConfig.preset("tiny" if quick else "gpt2")
    sweeps = [("step vs B", b, (STEP_QUICK_T if quick else STEP_T)[1])
              for b in (STEP_QUICK_B if quick else STEP_B)]
    sweeps += [("step vs T", 1, t) for t in (STEP_QUICK_T if quick else STEP_T)]
    rows = []
    with nanonorm.use_impl("numba"):
        model = GPT(cfg, seed=0)
        opt = model.configure_optimizer(lr=1e-6)
        for sweep, b, t in sweeps:
            rng = np.random.default_rng(0)
            idx, tgt = (rng.integers(0, cfg.vocab_size, (b, t)) for _ in range(2))

            def call():
                model.forward(idx, tgt, return_logits=False)
                opt.step(model.backward())
            call()                                              # warm
            seconds = median_time(call, reps)[0]
            rows.append(dict(sweep=sweep, B=b, T=t, seconds=seconds,
                             tokens_per_s=b * t / seconds, peak_MiB=_peak_bytes(call) / 2**20))
    return rows


def slope(xs, ys) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0]) if len(xs) > 1 else math.nan


# sweep -> (x key, ideal time slope, ideal memory slope); the step's memory is a fixed part
# (gradients) plus activations linear in B·T, so its slope has no single ideal
IDEAL = {"attention": ("T", 2.0, 1.0), "step vs B": ("B", 1.0, None),
         "step vs T": ("T", 1.0, None)}


def summary(rows) -> list[dict]:
    out = []
    for sweep, (key, ideal_t, ideal_m) in IDEAL.items():
        pts = [r for r in rows if r["sweep"] == sweep]
        if pts:
            xs = [r[key] for r in pts]
            out.append(dict(sweep=sweep, x=key, time_slope=slope(xs, [r["seconds"] for r in pts]),
                            ideal_time_slope=ideal_t, ideal_memory_slope=ideal_m,
                            memory_slope=slope(xs, [r["peak_MiB"] for r in pts])))
    return out


def rows(quick: bool = False) -> dict:
    points = attention_rows(quick) + step_rows(quick)
    return dict(points=points, slopes=summary(points))


def render(result) -> str:
    lines = ["| sweep | B | T | median s | rate | peak MiB (NumPy, traced) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["points"]:
        rate = (f"{r['GFLOPps']:.1f} GFLOP/s" if "GFLOPps" in r
                else f"{r['tokens_per_s']:,.0f} tok/s")
        lines.append(f"| {r['sweep']} | {r['B']} | {r['T']} | {r['seconds']:.4f} | {rate} | "
                     f"{r['peak_MiB']:.1f} |")
    lines += ["", "| sweep | log-log slope of time (ideal) | of peak memory (ideal) |",
              "| --- | ---: | ---: |"]
    for s in result["slopes"]:
        ideal_m = s["ideal_memory_slope"]
        lines.append(f"| {s['sweep']} (vs {s['x']}) | {s['time_slope']:.2f} "
                     f"({s['ideal_time_slope']:g}) | {s['memory_slope']:.2f} "
                     f"({'fixed + linear' if ideal_m is None else format(ideal_m, 'g')}) |")
    return "\n".join(lines)


def plot(result, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, s in zip(axes, result["slopes"]):
        pts = [r for r in result["points"] if r["sweep"] == s["sweep"]]
        xs = np.asarray([r[s["x"]] for r in pts], float)
        for key, ideal, style, label in (("seconds", s["ideal_time_slope"], "o-", "time s"),
                                         ("peak_MiB", s["ideal_memory_slope"], "s-",
                                          "peak MiB")):
            ys = np.asarray([r[key] for r in pts], float)
            line, = ax.loglog(xs, ys, style, label=f"{label} (slope {slope(xs, ys):.2f})")
            if ideal is not None:
                ax.loglog(xs, ys[0] * (xs / xs[0]) ** ideal, ":", color=line.get_color(),
                          label=f"ideal slope {ideal:g}")
        ax.set_xlabel(s["x"])
        ax.set_title(s["sweep"])
        ax.legend(fontsize=8)
    fig.suptitle("Cost against work, Numba kernels (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
