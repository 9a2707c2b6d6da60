"""The source study's table: GPT-2 small construction, forward at B=8, T=1024 over 5 repeats
and 5 training steps, per provider and device (reference, numba, numba with recompute=True;
cupy on a GPU; torch CPU/CUDA with transformers' GPT-2 alongside when importable), each row in
a fresh process. nanonorm's steps are training steps as `nanonorm train` runs them
(return_logits=False: the head and loss in blocks of rows), so peak RSS is a training run's.

`python -m bench --study` prints it after the grid; `python -m bench.study --study-row NAME`
is how a row's child process is started.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import nanonorm

from .providers import PROVIDERS, gpu_missing

STUDY = dict(B=8, T=1024, forward_repeats=5, train_steps=5)
STUDY_QUICK = dict(B=1, T=16, forward_repeats=2, train_steps=2)


def _study_config(quick: bool):
    from nanonorm.gpt import GPTConfig
    return GPTConfig.preset("tiny") if quick else GPTConfig.preset("gpt2")


def _clock(fn, sync=None) -> float:
    if sync:
        sync()
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()                                   # the GPU's work is done, not just queued
    return time.perf_counter() - t0


def _study_nanonorm(provider: str, quick: bool) -> dict:
    """provider: 'reference' / 'numba' (NumPy, CPU) or 'cupy' (GPU, the cuda kernels); a
    '-recompute' suffix trains with GPT(recompute=True)."""
    provider, recompute = provider.removesuffix("-recompute"), provider.endswith("-recompute")
    s = STUDY_QUICK if quick else STUDY
    cfg = _study_config(quick)
    device = "cuda" if provider == "cupy" else "cpu"
    sync = None
    if device == "cuda":
        import cupy
        sync = cupy.cuda.Device().synchronize
    impl = nanonorm.use_impl(provider if provider != "cupy" else "cuda")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, cfg.vocab_size, (s["B"], s["T"]))
    tgt = rng.integers(0, cfg.vocab_size, (s["B"], s["T"]))
    with impl:
        model = [None]
        build = _clock(lambda: model.__setitem__(
            0, nanonorm.GPT(cfg, device=device, recompute=recompute)), sync)
        m = model[0]
        xp = m.xp
        idx_d, tgt_d = xp.asarray(idx), xp.asarray(tgt)
        m.forward(idx_d[:, :8], tgt_d[:, :8])                      # warm-up: compile kernels
        m.backward()
        fwd = statistics.median(_clock(lambda: m.forward(idx_d), sync)
                                for _ in range(s["forward_repeats"]))
        opt = m.configure_optimizer(lr=1e-5)

        def train():
            for _ in range(s["train_steps"]):
                m.forward(idx_d, tgt_d, return_logits=False)
                opt.step(m.backward())
        steps = _clock(train, sync)
    return dict(provider=provider + "-recompute" * recompute, device=device, build_s=build,
                forward_s=fwd,
                train_s=steps)


def _study_torch(device: str, quick: bool) -> dict:
    import torch
    import transformers
    s = STUDY_QUICK if quick else STUDY
    cfg = _study_config(quick)
    sync = torch.cuda.synchronize if device == "cuda" else None
    tc = transformers.GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                                 vocab_size=cfg.vocab_size, n_positions=cfg.block_size,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                 activation_function="gelu_new")
    model = [None]
    build = _clock(lambda: model.__setitem__(0, transformers.GPT2LMHeadModel(tc).to(device)),
                   sync)
    m = model[0]
    rng = np.random.default_rng(0)
    idx = torch.as_tensor(rng.integers(0, cfg.vocab_size, (s["B"], s["T"])), device=device)
    tgt = torch.as_tensor(rng.integers(0, cfg.vocab_size, (s["B"], s["T"])), device=device)
    m.eval()
    with torch.no_grad():
        m(idx[:, :8])
        fwd = statistics.median(_clock(lambda: m(idx), sync)
                                for _ in range(s["forward_repeats"]))
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)

    def train():
        for _ in range(s["train_steps"]):
            logits = m(idx).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size),
                                                     tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    steps = _clock(train, sync)
    return dict(provider=f"torch-{device}", device=device, build_s=build, forward_s=fwd,
                train_s=steps)


def study_row(provider: str, quick: bool = False) -> dict:
    """One row of the study's table, measured in this process."""
    if provider.startswith("torch"):
        return _study_torch(provider[6:], quick)
    return _study_nanonorm(provider, quick)


def _study_in_child(provider: str, quick: bool) -> dict:
    """One row in a fresh Python process with glibc's default allocator: no heap, threads or
    imports carried over from the grid or the other providers, and a provider that runs out
    of memory costs only its own row. At B=8, T=1024 torch's step peaks near the machine's
    memory (docs/benchmarks.md), and with freed memory kept (`nanonorm.memory`) it outgrew it,
    so the study leaves the allocator alone."""
    cmd = [sys.executable, "-m", f"{__package__}.study", "--study-row", provider]
    cmd += ["--quick"] * quick
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    why = (f"killed by signal {-proc.returncode} (out of memory?)" if proc.returncode < 0
           else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    device = "cuda" if provider in ("cupy", "torch-cuda") else "cpu"
    return dict(provider=provider, device=device, error=why)


def _run_study_row(provider: str, quick: bool) -> int:
    """`--study-row`: print one row as JSON, with this process's peak resident memory."""
    import resource
    row = study_row(provider, quick)
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # from KiB
    print(json.dumps(row))
    return 0


def study_table(*, quick: bool = False, providers=None) -> list[dict]:
    """One row per provider that can run here, each in its own process (see _study_in_child);
    GPU providers are left out without a GPU."""
    gpu = gpu_missing() is None
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    wanted = providers or ["reference", "numba", "numba-recompute", "cupy", "torch-cpu",
                           "torch-cuda"]
    rows = []
    for p in wanted:
        if p in ("cupy", "torch-cuda") and not gpu:
            continue
        if p.startswith("torch") and not have_torch:
            continue
        if p == "torch-cuda" and PROVIDERS["torch-cuda"].missing():
            continue
        rows.append(_study_in_child(p, quick))
    return rows


def render_study(rows, quick: bool = False) -> str:
    s = STUDY_QUICK if quick else STUDY
    lines = [f"| provider | device | construction s | forward B={s['B']}, T={s['T']} s "
             f"(median of {s['forward_repeats']}) | {s['train_steps']} training steps s "
             "| peak RSS GiB |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['provider']} | {r['device']} | failed: {r['error']} | | | |")
            continue
        lines.append(f"| {r['provider']} | {r['device']} | {r['build_s']:.3f} | "
                     f"{r['forward_s']:.4f} | {r['train_s']:.3f} | "
                     f"{r.get('peak_rss_GiB', float('nan')):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.study", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--study-row", metavar="PROVIDER", required=True,
                    help="print one row, measured in this process, as JSON")
    args = ap.parse_args(argv)
    return _run_study_row(args.study_row, args.quick)


if __name__ == "__main__":
    sys.exit(main())
