"""GPU rows for the bench: the `cuda` provider and the source study's CPU-vs-GPU table.

- `cuda_rows(cases)`: the microbenchmark cases of `bench.core` on CuPy arrays (nanonorm's
  numba-cuda kernels, cuBLAS matmuls) and on torch CUDA tensors when torch sees a GPU.
  Timing: validate once against the NumPy reference, warm up, then per repeat flush the L2
  (write a buffer twice its size), record CUDA events around the call and synchronise; the
  median is reported. The roofline is this GPU's device-to-device copy bandwidth and sgemm
  rate, measured in the same run the same way.
- `study_table()`: the study's table (model construction, forward at B=8, T=1024 over 5
  repeats, 5 training steps) for GPT-2 small on the CPU (reference, numba) and the GPU (cupy),
  with torch CPU/CUDA (transformers' GPT-2) alongside when importable.

Without CuPy or a GPU every entry point says so (`available()` gives the reason) and returns
no GPU rows; `python -m bench.gpu` prints the reason and exits 0.
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
import nanonorm.functional as F

STUDY = dict(B=8, T=1024, forward_repeats=5, train_steps=5)
STUDY_QUICK = dict(B=1, T=16, forward_repeats=2, train_steps=2)


def available() -> str | None:
    """None when CuPy sees a GPU, else why not (what is missing)."""
    try:
        import cupy
    except ImportError:
        return "no GPU / CuPy not installed (pip install 'nanonorm[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or a broken one
        return f"no GPU: CUDA runtime unavailable ({type(e).__name__}: {e})"
    return None if count > 0 else "no GPU: CuPy sees no CUDA device"


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# timing --------------------------------------------------------------------------------------

class GpuTimer:
    """Median of CUDA-event timings with an L2 flush before each repeat (flush not timed)."""

    def __init__(self):
        import cupy
        self.cp = cupy
        l2 = cupy.cuda.Device().attributes.get("L2CacheSize", 50 << 20)
        self.flush_buf = cupy.empty(2 * l2, dtype=cupy.uint8)      # 2x L2: evicts all of it

    def __call__(self, fn, repeats: int, warmup: int = 2):
        cp = self.cp
        for _ in range(warmup):
            fn()
        times = []
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        for _ in range(repeats):
            self.flush_buf.fill(0)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)   # seconds
        cp.cuda.Device().synchronize()
        return statistics.median(times)


def device_rates(timer: GpuTimer, n: int = 1 << 28) -> dict:
    """Device-to-device copy bandwidth (read + write, GB/s) and sgemm GFLOP/s."""
    cp = timer.cp
    a, b = cp.ones(n // 4, cp.float32), cp.empty(n // 4, cp.float32)            # n bytes each
    copy_s = timer(lambda: cp.copyto(b, a), 7)
    m = 8192
    x = cp.random.default_rng(0).standard_normal((m, m), dtype=cp.float32)
    gemm_s = timer(lambda: x @ x, 5)
    return {"copy_GBps": 2 * n / copy_s / 1e9, "sgemm_GFLOPps": 2 * m ** 3 / gemm_s / 1e9}


def _close(out, ref) -> bool:
    from nanonorm.backend import to_numpy
    out, ref = np.asarray(to_numpy(out), np.float64), np.asarray(to_numpy(ref), np.float64)
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    return out.shape == ref.shape and bool(np.allclose(out, ref, rtol=2e-3, atol=2e-3 * scale))


# the cuda provider on bench.core's cases -----------------------------------------------------

def _cuda_runner(name: str, d: dict):
    """A zero-argument callable for case `name` on device inputs `d` (None: no GPU runner)."""
    if name == "layernorm_fwd":
        return lambda: F.layer_norm_forward(d["x"], d["x"].shape[-1:], d["w"], d["b"])[0]
    if name == "layernorm_fwd_bwd":
        def f():
            _, c = F.layer_norm_forward(d["x"], d["x"].shape[-1:], d["w"], d["b"])
            return F.layer_norm_backward(d["dy"], c)[0]
        return f
    if name == "softmax_fwd":
        return lambda: F.softmax(d["x"])
    if name == "gelu_fwd":
        return lambda: F.gelu(d["x"])
    if name == "cross_entropy_fwd_bwd":
        def f():
            _, c = F.cross_entropy_forward(d["z"], d["t"])
            return F.cross_entropy_backward(1.0, c)
        return f
    if name == "adamw_step":
        import cupy
        p, m, v = d["p"].copy(), cupy.zeros_like(d["p"]), cupy.zeros_like(d["p"])
        step = [0]
        def f():
            step[0] += 1
            nanonorm.dispatch.resolve("adamw_step", p)(p, d["g"], m, v, lr=1e-3, beta1=0.9,
                                                        beta2=0.95, eps=1e-8,
                                                        weight_decay=0.1, step=step[0])
            return p
        return f
    if name.startswith("attention_causal"):
        bwd = name.endswith("bwd")
        def f():
            y, c = F.scaled_dot_product_attention_forward(d["q"], d["k"], d["v"], causal=True)
            return F.scaled_dot_product_attention_backward(d["dy"], c)[0] if bwd else y
        return f
    return None


def _torch_runner(torch, name: str, d: dict):
    """The same case on torch CUDA tensors (None where there is no torch counterpart)."""
    tf = torch.nn.functional
    if name == "layernorm_fwd":
        return lambda: tf.layer_norm(d["x"], d["x"].shape[-1:], d["w"], d["b"])
    if name == "softmax_fwd":
        return lambda: torch.softmax(d["x"], -1)
    if name == "gelu_fwd":
        return lambda: tf.gelu(d["x"], approximate="tanh")
    if name.startswith("attention_causal") and not name.endswith("bwd"):
        return lambda: tf.scaled_dot_product_attention(d["q"], d["k"], d["v"], is_causal=True)
    return None


def cuda_rows(cases, *, quick: bool = False, repeats: int | None = None) -> list[dict]:
    """Rows in bench.core's format for the `cuda` and `torch-cuda` providers ([] without a GPU).

    `ratio_to_torch` is against torch on the same GPU; bench.core must not recompute it.
    """
    if available() is not None:
        return []
    import cupy
    timer = GpuTimer()
    rates = device_rates(timer, n=1 << 22 if quick else 1 << 28)
    torch = _torch_cuda()
    rows = []
    for case in cases:
        size = case.quick if quick else case.full
        host = case.make(size, np.random.default_rng(0))
        dev = {k: cupy.asarray(v) for k, v in host.items()}
        fn = _cuda_runner(case.name, dev)
        if fn is None:
            continue
        ref = None                                          # validate once, before timing
        if case.name != "adamw_step" and (quick or case.ref_ok):   # (AdamW: its own state)
            with nanonorm.use_impl("reference"):          # the same calls on NumPy inputs
                ref = _cuda_runner(case.name, host)()
        first = fn()
        valid = _close(first, ref) if ref is not None else None
        reps = repeats or (3 if quick else 20)
        provs = [("cuda", fn)]
        if torch is not None:
            td = {k: torch.as_tensor(v, device="cuda") for k, v in host.items()}
            tfn = _torch_runner(torch, case.name, td)
            if tfn is not None:
                provs.append(("torch-cuda", tfn))
        times = {p: timer(f, reps) for p, f in provs}
        work = case.work(size)
        roof = rates["copy_GBps"] if case.unit == "GB/s" else rates["sgemm_GFLOPps"]
        for p, sec in times.items():
            rate = work / sec / 1e9
            rows.append(dict(case=case.name, size=size, provider=p, ms=sec * 1e3, rate=rate,
                             unit=case.unit, roofline_fraction=rate / roof,
                             first_call_ms=None, compile_s=None, repeats=reps,
                             validated=valid if p == "cuda" else None,
                             ratio_to_torch=(sec / times["torch-cuda"]
                                             if "torch-cuda" in times else None)))
    return rows


# the study's CPU-vs-GPU table ----------------------------------------------------------------

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
    """provider: 'reference' / 'numba' (NumPy, CPU) or 'cupy' (GPU, the cuda kernels)."""
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
        build = _clock(lambda: model.__setitem__(0, nanonorm.GPT(cfg, device=device)), sync)
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
                m.forward(idx_d, tgt_d)
                opt.step(m.backward())
        steps = _clock(train, sync)
    return dict(provider=provider, device=device, build_s=build, forward_s=fwd,
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
    of memory costs only its own row. At B=8, T=1024 on 23 GiB, measured peaks: reference
    15.6 GiB, torch 19.3 GiB; with freed memory kept (`nanonorm.memory`) torch's step outgrew the
    machine and was killed, so the study leaves the allocator alone."""
    cmd = [sys.executable, "-m", f"{__package__}.gpu", "--study-row", provider]
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
    import nanonorm.kernels.cpu  # noqa: F401  (before torch: see nanonorm.kernels.cpu)
    row = study_row(provider, quick)
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # from KiB
    print(json.dumps(row))
    return 0


def study_table(*, quick: bool = False, providers=None) -> list[dict]:
    """One row per provider that can run here, each in its own process (see _study_in_child);
    GPU providers are left out without a GPU."""
    gpu = available() is None
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    wanted = providers or ["reference", "numba", "cupy", "torch-cpu", "torch-cuda"]
    rows = []
    for p in wanted:
        if p in ("cupy", "torch-cuda") and not gpu:
            continue
        if p.startswith("torch") and not have_torch:
            continue
        if p == "torch-cuda" and _torch_cuda() is None:
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
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--study", action="store_true", help="also the CPU-vs-GPU study table")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--study-row", metavar="PROVIDER", help=argparse.SUPPRESS)  # a child's job
    args = ap.parse_args(argv)
    if args.study_row:
        return _run_study_row(args.study_row, args.quick)
    reason = available()
    out = {"gpu": reason is None, "reason": reason, "rows": [], "study": []}
    if reason is not None:
        print(f"GPU rows skipped: {reason}")
    else:
        from .core import CASES, render_table
        out["rows"] = cuda_rows(CASES, quick=args.quick)
        print(render_table({"rows": out["rows"]}))
    if args.study:
        out["study"] = study_table(quick=args.quick)
        print(render_study(out["study"], args.quick))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
