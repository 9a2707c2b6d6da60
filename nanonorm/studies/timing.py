"""Study 8 (seed 4): model construction, forward passes and training steps, timed for every
device and implementation present on this machine, side by side.

The seed times GPT-2 small at B=8, T=1024 in PyTorch. A NumPy forward at that size takes far
too long for a report that should finish in minutes on a laptop CPU (5 forwards and 5 steps
took ~6 min with Numba, ~8 min with the reference here: `python -m bench --study`), so SIZES
keeps GPT-2 small's architecture (all 124M parameters) at the bench's B=4, T=256; the report
states the size.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time

import numpy as np
from matplotlib.figure import Figure

SIZES = {"full": {"preset": "gpt2", "batch": 4, "seq": 256},     # the bench's GPT-2 row
         "quick": {"preset": "tiny", "batch": 2, "seq": 32}}
# the seed's figures (4-gpt2-cpu-vs-gpu-timing.md §3.2, §4.2, §5.2), quoted; PyTorch,
# GPT-2 small ("Model 5"), a GPU such as an NVIDIA A100
SEED = {"size": "GPT-2 small (Model 5), B = 8, T = 1024",
        "construction": {"cpu": "~1.2 s", "gpu": "~1.5 s"},
        "forward_5_repeats": {"cpu": "~20 s", "gpu": "~0.03 s (30 ms)"},
        "train_5_steps": {"cpu": "> 60 s", "gpu": "~1.6 s"},
        "claim": "GPU about 4 orders of magnitude faster on the forward pass"}


def providers() -> list[dict]:
    """Each (device, implementation) this machine can run, or why it cannot."""
    from ..machine import environment
    from ..dispatch import implementation_for, kernels

    numba_ops = sorted(op for op in kernels("reference")
                       if implementation_for(op, np.empty(0, np.float32)) == "numba")
    gpu = environment()["gpu"]
    return [
        {"name": "NumPy reference", "device": "cpu", "impl": "reference", "available": True,
         "note": "every op on the xp-generic reference (use_impl('reference'))"},
        {"name": "NumPy + Numba (default dispatch)", "device": "cpu", "impl": None,
         "available": bool(numba_ops),
         "note": (f"Numba kernels for {len(numba_ops)} ops: {', '.join(numba_ops)}" if numba_ops
                  else "no Numba kernels installed: identical to the reference")},
        {"name": f"CuPy on {gpu}" if gpu else "CuPy (GPU)", "device": "cuda", "impl": None,
         "available": gpu is not None,
         "note": "CUDA kernels where present, reference elsewhere" if gpu
         else "no GPU on this machine (no CuPy device found)"},
    ]


def _sync(device: str) -> None:
    if device == "cuda":  # GPU work is asynchronous: wait for it before reading the clock
        import cupy
        cupy.cuda.Device().synchronize()


def time_model(*, preset: str, batch: int, seq: int, repeats: int = 5, steps: int = 5,
               device: str = "cpu", impl: str | None = None, seed: int = 0) -> dict:
    """Seconds for: constructing the model, one warm-up forward (compiles Numba/CUDA kernels),
    `repeats` forwards of (batch, seq) tokens, and `steps` training steps (forward with loss,
    backward, AdamW); step 1 is listed apart as it may compile the backward kernels."""
    from .. import use_impl
    from ..gpt import GPT, GPTConfig
    from ..optim import AdamW

    config = GPTConfig.preset(preset)
    ids = np.random.default_rng(seed).integers(0, config.vocab_size, (batch, seq + 1))
    idx, targets = ids[:, :-1], ids[:, 1:]

    def clock(fn):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return out, time.perf_counter() - t0

    with use_impl(impl) if impl else contextlib.nullcontext():
        model, construction = clock(lambda: GPT(config, seed=seed, device=device))
        warmup = clock(lambda: model.forward(idx))[1]
        forwards = [clock(lambda: model.forward(idx))[1] for _ in range(repeats)]
        opt = AdamW(model.parameters(), lr=1e-4)
        train = [clock(lambda: opt.step(_grads(model, idx, targets)))[1] for _ in range(steps)]
    return {"preset": preset, "parameters": config.num_parameters(), "batch": batch,
            "seq": seq, "device": device, "impl": impl or "default",
            "construction_s": construction, "warmup_forward_s": warmup,
            "forward_s": forwards, "forward_total_s": sum(forwards),
            "forward_median_s": statistics.median(forwards),
            "tokens_per_s_forward": batch * seq / statistics.median(forwards),
            "train_step_s": train, "train_total_s": sum(train),
            "train_median_s": statistics.median(train[1:] or train)}


def _grads(model, idx, targets) -> dict:
    model.forward(idx, targets)
    return model.backward()


def run(*, mode: str = "full", size: dict | None = None, repeats: int = 5, steps: int = 5,
        seed: int = 0) -> dict:
    """time_model for every available provider; `size` overrides SIZES[mode]."""
    size = size or SIZES[mode]
    # other processes competing for the CPU inflate and scatter every time below
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for p in providers():
        row = {"provider": p["name"], "device": p["device"], "available": p["available"],
               "note": p["note"]}
        if p["available"]:
            row.update(time_model(**size, repeats=repeats, steps=steps, device=p["device"],
                                  impl=p["impl"], seed=seed))
        rows.append(row)
    return {"mode": mode, "size": size, "repeats": repeats, "steps": steps, "rows": rows,
            "load_average_1min": load, "cpu_count": os.cpu_count()}


def plot(result: dict) -> Figure:
    rows = [r for r in result["rows"] if r["available"]]
    phases = (("construction_s", "construction"), ("warmup_forward_s", "first forward"),
              ("forward_total_s", f"{result['repeats']} forwards"),
              ("train_total_s", f"{result['steps']} training steps"))
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(phases))
    for i, r in enumerate(rows):
        vals = [r[k] for k, _ in phases]
        bars = ax.bar(x + i * width, vals, width, label=r["provider"])
        ax.bar_label(bars, fmt="%.3g s", fontsize=8)
    ax.set_xticks(x + width * (len(rows) - 1) / 2, [label for _, label in phases])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    s = result["size"]
    ax.set_title(f"Timing: '{s['preset']}' at B = {s['batch']}, T = {s['seq']} "
                 f"({result['mode']} size) on this machine")
    ax.legend()
    return fig
