"""Study 8 (note 4): model construction, forward passes and training steps of Model 5 (GPT-2
small with its own unembedding, 163M parameters), timed for every device and implementation
present, while a background thread samples how much of the machine other processes take.

The note times B=8, T=1024 in PyTorch. The full run times Model 5 at the bench's B=4, T=256,
then at the note's size for each provider whose time, projected from that first measurement,
fits NOTE_SIZE_BUDGET_S and whose memory fits what the machine has free; each such run is a
child process (as the bench's --study runs), so running out of memory costs only its row.
--quick times a tiny untied model (Model 5's layout at toy size).
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from matplotlib.figure import Figure

from .load import LoadMonitor

SIZES = {"full": {"preset": "model5", "batch": 4, "seq": 256},    # the bench's GPT-2 size
         "quick": {"preset": "tiny", "batch": 2, "seq": 32, "tie_weights": False}}
NOTE_SIZE = {"preset": "model5", "batch": 8, "seq": 1024}
NOTE_SIZE_BUDGET_S = 240.0   # per provider: beyond it the full report would take too long
# note 4 (§3.2, §4.2, §5.2), quoted: PyTorch, Model 5, B = 8, T = 1024, a GPU such as an A100
NOTE = {"size": "Model 5 (GPT-2 small, untied), B = 8, T = 1024",
        "construction": {"cpu": "~1.2 s", "gpu": "~1.5 s"},
        "forward_5_repeats": {"cpu": "~20 s", "gpu": "~0.03 s (30 ms)"},
        "train_5_steps": {"cpu": "> 60 s", "gpu": "~1.6 s"},
        "claim": "GPU nhanh hơn CPU khoảng 4 bậc độ lớn (GPU about 4 orders of magnitude "
                 "faster) on the forward pass"}
# the same figures as numbers, for the plot ("> 60 s" drawn at 60 s, marked as a lower bound)
NOTE_SECONDS = {"cpu": {"construction_s": 1.2, "forward_total_s": 20.0, "train_total_s": 60.0},
                "gpu": {"construction_s": 1.5, "forward_total_s": 0.03, "train_total_s": 1.6}}


def providers() -> list[dict]:
    """Each (device, implementation) this machine can run, or why it cannot."""
    from ..dispatch import implementation_for, kernels
    from ..machine import environment

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


def _config(preset: str, **overrides):
    from ..gpt import GPTConfig
    return GPTConfig.preset(preset, **overrides)


def _sync(device: str) -> None:
    if device == "cuda":  # GPU work is asynchronous: wait for it before reading the clock
        import cupy
        cupy.cuda.Device().synchronize()


def time_model(*, preset: str, batch: int, seq: int, repeats: int = 5, steps: int = 5,
               device: str = "cpu", impl: str | None = None, seed: int = 0,
               tie_weights: bool | None = None, progress=None, load_source=None) -> dict:
    """Seconds for: constructing the model, one warm-up forward (compiles Numba/CUDA kernels),
    `repeats` forwards of (batch, seq) tokens, and `steps` training steps (forward with loss,
    backward, AdamW); step 1 is listed apart as it may compile the backward kernels. `load`
    holds what other processes took of the machine meanwhile (load.LoadMonitor)."""
    from .. import use_impl
    from ..gpt import GPT

    config = _config(preset, **({} if tie_weights is None else {"tie_weights": tie_weights}))
    ids = np.random.default_rng(seed).integers(0, config.vocab_size, (batch, seq + 1))
    idx, targets = ids[:, :-1], ids[:, 1:]
    say = progress or (lambda text: None)

    def clock(what, fn):
        say(what)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        return out, time.perf_counter() - t0

    with LoadMonitor(load_source) as load, \
            use_impl(impl) if impl else contextlib.nullcontext():
        model, construction = clock("construction", lambda: GPT(config, seed=seed, device=device))
        warmup = clock("first forward", lambda: model.forward(idx))[1]
        forwards = [clock(f"forward {i + 1}/{repeats}", lambda: model.forward(idx))[1]
                    for i in range(repeats)]
        opt = model.configure_optimizer(lr=1e-4)
        train = [clock(f"training step {i + 1}/{steps}",
                       lambda: opt.step(_grads(model, idx, targets)))[1] for i in range(steps)]
    return {"preset": preset, "tie_weights": config.tie_weights,
            "parameters": config.num_parameters(), "batch": batch, "seq": seq,
            "device": device, "impl": impl or "default",
            "construction_s": construction, "warmup_forward_s": warmup,
            "forward_s": forwards, "forward_total_s": sum(forwards),
            "forward_median_s": statistics.median(forwards),
            "tokens_per_s_forward": batch * seq / statistics.median(forwards),
            "train_step_s": train, "train_total_s": sum(train),
            "train_median_s": statistics.median(train[1:] or train), "load": load.summary()}


def _grads(model, idx, targets) -> dict:
    model.forward(idx, targets)
    return model.backward()


def run(*, mode: str = "full", size: dict | None = None, repeats: int = 5, steps: int = 5,
        seed: int = 0, note_size: bool | None = None, budget_s: float = NOTE_SIZE_BUDGET_S,
        progress=None, load_source=None) -> dict:
    """time_model for every available provider at `size` (default SIZES[mode]); then, when
    note_size (default: the full mode), at NOTE_SIZE where the machine allows."""
    size = size or SIZES[mode]
    note_size = mode == "full" if note_size is None else note_size
    rows = []
    for p in providers():
        row = {"provider": p["name"], "device": p["device"], "available": p["available"],
               "note": p["note"]}
        if p["available"]:
            tell = (lambda t, n=p["name"]: progress(f"{n}: {t}")) if progress else None
            row.update(time_model(**size, repeats=repeats, steps=steps, device=p["device"],
                                  impl=p["impl"], seed=seed, progress=tell,
                                  load_source=load_source))
        rows.append(row)
    note_rows = [note_size_row(p, r, repeats=repeats, steps=steps, budget_s=budget_s,
                               progress=progress)
                 for p, r in zip(providers(), rows) if p["available"]] if note_size else []
    return {"mode": mode, "size": size, "repeats": repeats, "steps": steps, "rows": rows,
            "note_size": NOTE_SIZE, "note_size_budget_s": budget_s, "note_rows": note_rows,
            "cpu_count": os.cpu_count()}


def projected_seconds(row: dict, size: dict = NOTE_SIZE) -> float:
    """A lower bound of construction + the forwards + the training steps at `size`, from a row
    measured at a smaller size: the per-token time at least stays (attention's grows with T)."""
    scale = size["batch"] * size["seq"] / (row["batch"] * row["seq"])
    return row["construction_s"] + scale * (row["warmup_forward_s"] + row["forward_total_s"]
                                            + row["train_total_s"])


def memory_needed_bytes(size: dict = NOTE_SIZE) -> int:
    """A lower bound of a training step's memory: float32 weights, gradients and both AdamW
    moments, and the logits with two (B, T, V) arrays of their gradient's making."""
    config = _config(size["preset"])
    return 4 * (4 * config.num_parameters() + 3 * size["batch"] * size["seq"] * config.vocab_size)


def memory_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def note_size_row(p: dict, measured: dict, *, repeats: int, steps: int, budget_s: float,
                  progress=None) -> dict:
    """The note's size for provider p if the projection from `measured` fits the budget and
    the memory; else why not."""
    row = {"provider": p["name"], "device": p["device"], **NOTE_SIZE,
           "projected_s": projected_seconds(measured), "memory_needed": memory_needed_bytes(),
           "memory_available": memory_available_bytes()}
    if row["projected_s"] > budget_s:
        return {**row, "skipped": f"projected at least {row['projected_s']:.0f} s, over the "
                                  f"report's {budget_s:.0f} s budget per provider"}
    if row["memory_available"] is not None and row["memory_needed"] > row["memory_available"]:
        return {**row, "skipped": f"needs at least {row['memory_needed'] / 2**30:.1f} GiB, "
                                  f"{row['memory_available'] / 2**30:.1f} GiB available"}
    if progress:
        progress(f"{p['name']}: B = {NOTE_SIZE['batch']}, T = {NOTE_SIZE['seq']} in a child "
                 f"process (projected ≥ {row['projected_s']:.0f} s)")
    return {**row, **time_in_child(**NOTE_SIZE, repeats=repeats, steps=steps,
                                   device=p["device"], impl=p["impl"],
                                   timeout_s=max(60.0, 3 * row["projected_s"]))}


def time_in_child(*, timeout_s: float, **kwargs) -> dict:
    """time_model in a fresh Python process, with its peak resident memory; a child that fails,
    is killed or overruns timeout_s gives {"error": why}."""
    cmd = [sys.executable, "-m", __name__, json.dumps(kwargs)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout_s:.0f} s"}
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    why = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
           else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return {"error": why}


def _child(argv) -> int:
    import resource
    row = time_model(**json.loads(argv[0]))
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
    print(json.dumps(row))
    return 0


def plot(result: dict) -> Figure:
    rows = [r for r in result["rows"] if r["available"]]
    rows += [dict(r, provider=f"{r['provider']}, B = {r['batch']}, T = {r['seq']}")
             for r in result["note_rows"] if "construction_s" in r]
    phases = (("construction_s", "construction"), ("warmup_forward_s", "first forward"),
              ("forward_total_s", f"{result['repeats']} forwards"),
              ("train_total_s", f"{result['steps']} training steps"))
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(phases))
    for i, r in enumerate(rows):
        busy = " (busy machine)" if r["load"]["busy"] else ""
        bars = ax.bar(x + i * width, [r[k] for k, _ in phases], width,
                      label=r["provider"] + busy, hatch="//" if busy else None)
        ax.bar_label(bars, fmt="%.3g s", fontsize=8)
    centre = x + width * (len(rows) - 1) / 2
    for device, marker in (("cpu", "s"), ("gpu", "D")):
        known = [(i, NOTE_SECONDS[device][k]) for i, (k, _) in enumerate(phases)
                 if k in NOTE_SECONDS[device]]
        ax.plot([centre[i] for i, _ in known], [v for _, v in known], marker, color="k",
                mfc="none" if device == "gpu" else "k", ms=8, ls="none",
                label=f"note 4's PyTorch {device.upper()} figures, {NOTE['size']}"
                      + (" (training: '> 60 s')" if device == "cpu" else ""))
    ax.set_xticks(centre, [label for _, label in phases])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale)")
    s = result["size"]
    ax.set_title(f"Timing on this machine: '{s['preset']}' at B = {s['batch']}, T = {s['seq']} "
                 f"({result['mode']} run), beside note 4's figures")
    ax.legend(fontsize=7)
    return fig


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
