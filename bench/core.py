"""The microbenchmark grid: providers (reference, numba, torch) × GPT-2 small sizes.

Each provider runs once and is checked against the reference (or, where the reference would
take minutes, against the numba result that the test suite checks against it) before it is
timed: warm-up, then the median of repeats, the providers of a case taking turns in blocks of
calls (fast rows repeat for about half a second). Every row reports ms, GB/s (memory-bound
kernels, from the bytes-moved model beside each case) or GFLOP/s (matmul-bound ones), the
fraction of this machine's copy bandwidth (a fused Numba triad) or matmul rate (a NumPy sgemm)
measured in the same run, and the ratio to torch. Numba's compile time (first call minus median) is
reported separately. Writes JSON and a matplotlib chart.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import nanonorm
import nanonorm.functional as F
# before torch: the kernels set up their OpenMP threads while no libgomp is loaded (torch's
# would otherwise be shared, with its long idle spin; see nanonorm.kernels.cpu). torch's own
# step time measured the same either way (5.4-5.9 s on GPT-2 small, B=4, T=256).
import nanonorm.kernels.cpu  # noqa: F401,E402


@dataclass
class Case:
    name: str
    full: dict               # GPT-2 small sizes
    quick: dict              # a tiny grid for the smoke test
    unit: str                # "GB/s" (bytes model) or "GFLOP/s" (FLOP model)
    work: Callable           # size -> bytes or FLOPs per call
    make: Callable           # (size, rng) -> dict of NumPy inputs
    run: Callable            # (provider, inputs) -> zero-argument callable returning NumPy
    ref_ok: bool = True      # False: the reference is too slow at full size, numba validates


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _impl(name):
    return nanonorm.use_impl(name)


def _t(torch, a, grad=False):
    x = torch.from_numpy(np.ascontiguousarray(a))
    return x.requires_grad_(grad) if grad else x


# the cases -----------------------------------------------------------------------------------

def _ln_make(s, rng):
    n, c = s["N"], s["C"]
    return dict(x=rng.standard_normal((n, c), np.float32),
                w=rng.standard_normal(c, np.float32), b=rng.standard_normal(c, np.float32),
                dy=rng.standard_normal((n, c), np.float32))


def _ln_fwd(p, d):
    if p == "torch":
        torch = _torch()
        x, w, b = _t(torch, d["x"]), _t(torch, d["w"]), _t(torch, d["b"])
        return lambda: torch.nn.functional.layer_norm(x, x.shape[-1:], w, b).numpy()
    def f():
        with _impl(p):
            return F.layer_norm_forward(d["x"], d["x"].shape[-1:], d["w"], d["b"])[0]
    return f


def _ln_fwdbwd(p, d):
    if p == "torch":
        torch = _torch()
        dy = _t(torch, d["dy"])
        def f():
            x, w, b = _t(torch, d["x"], True), _t(torch, d["w"], True), _t(torch, d["b"], True)
            torch.nn.functional.layer_norm(x, x.shape[-1:], w, b).backward(dy)
            return x.grad.numpy()
        return f
    def f():
        with _impl(p):
            _, c = F.layer_norm_forward(d["x"], d["x"].shape[-1:], d["w"], d["b"])
            return F.layer_norm_backward(d["dy"], c)[0]
    return f


def _sm_make(s, rng):
    return dict(x=rng.standard_normal(s["shape"], np.float32) * 3)


def _sm_fwd(p, d):
    if p == "torch":
        torch = _torch()
        x = _t(torch, d["x"])
        return lambda: torch.softmax(x, -1).numpy()
    def f():
        with _impl(p):
            return F.softmax_forward(d["x"])[0]
    return f


def _gelu_make(s, rng):
    return dict(x=rng.standard_normal((s["N"], s["C"]), np.float32),
                dy=rng.standard_normal((s["N"], s["C"]), np.float32))


def _gelu_fwd(p, d):
    if p == "torch":
        torch = _torch()
        x = _t(torch, d["x"])
        return lambda: torch.nn.functional.gelu(x, approximate="tanh").numpy()
    def f():
        with _impl(p):
            return F.gelu_forward(d["x"])[0]
    return f


def _ce_make(s, rng):
    return dict(z=rng.standard_normal((s["N"], s["V"]), np.float32) * 2,
                t=rng.integers(0, s["V"], s["N"]))


def _ce_fwdbwd(p, d):
    if p == "torch":
        torch = _torch()
        t = torch.from_numpy(d["t"])
        def f():
            z = _t(torch, d["z"], True)
            torch.nn.functional.cross_entropy(z, t).backward()
            return z.grad.numpy()
        return f
    def f():
        with _impl(p):
            _, c = F.cross_entropy_forward(d["z"], d["t"])
            return F.cross_entropy_backward(1.0, c)
    return f


def _attn_make(s, rng):
    shape = (s["B"], s["H"], s["T"], s["d"])
    return {n: rng.standard_normal(shape, np.float32) for n in ("q", "k", "v", "dy")}


def _attn(p, d, bwd):
    if p == "torch":
        torch = _torch()
        sdpa = torch.nn.functional.scaled_dot_product_attention
        dy = _t(torch, d["dy"])
        def f():
            q, k, v = (_t(torch, d[n], bwd) for n in "qkv")
            y = sdpa(q, k, v, is_causal=True)
            if not bwd:
                return y.numpy()
            y.backward(dy)
            return q.grad.numpy()
        return f
    def f():
        with _impl(p):
            y, c = F.scaled_dot_product_attention_forward(d["q"], d["k"], d["v"], causal=True)
            return F.scaled_dot_product_attention_backward(d["dy"], c)[0] if bwd else y
    return f


def _adamw_make(s, rng):
    n = s["P"]
    return dict(p=rng.standard_normal(n, np.float32), g=rng.standard_normal(n, np.float32))


def _adamw(p, d):
    hyper = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    if p == "torch":
        torch = _torch()
        param = torch.nn.Parameter(_t(torch, d["p"]).clone())
        param.grad = _t(torch, d["g"])
        opt = torch.optim.AdamW([param], **hyper)
        def f():
            opt.step()
            return param.detach().numpy()
        return f
    param, m, v = d["p"].copy(), np.zeros_like(d["p"]), np.zeros_like(d["p"])
    step = [0]
    def f():
        step[0] += 1
        with _impl(p):
            nanonorm.dispatch.resolve("adamw_step", param)(
                param, d["g"], m, v, lr=hyper["lr"], beta1=0.9, beta2=0.95, eps=1e-8,
                weight_decay=0.1, step=step[0])
        return param
    return f


def _gpt_make(s, rng):
    return dict(idx=rng.integers(0, 50257, (s["B"], s["T"])),
                tgt=rng.integers(0, 50257, (s["B"], s["T"])))


def _gpt(p, d, train, size):
    """GPT-2 small (or the quick grid's tiny config): nanonorm vs transformers + torch AdamW."""
    cfg = dict(n_layer=size["L"], n_head=size["H"], n_embd=size["C"], vocab_size=50257,
               block_size=1024)
    if p == "torch":
        torch = _torch()
        import transformers
        tc = transformers.GPT2Config(n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                                     n_embd=cfg["n_embd"], vocab_size=50257, n_positions=1024,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                     activation_function="gelu_new")
        model = transformers.GPT2LMHeadModel(tc)
        idx, tgt = torch.from_numpy(d["idx"]), torch.from_numpy(d["tgt"])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                weight_decay=0.1)
        def f():
            if not train:
                model.eval()
                with torch.no_grad():
                    return model(idx).logits[0, -1].numpy()
            model.train()
            logits = model(idx).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 50257), tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return np.asarray(float(loss.detach()))
        return f
    from nanonorm.gpt import GPT, GPTConfig
    model = GPT(GPTConfig(**cfg), seed=0)
    opt = model.configure_optimizer(lr=1e-5)
    def f():
        with _impl(p):
            if not train:
                return model.forward(d["idx"])[0][0, -1]
            _, loss = model.forward(d["idx"], d["tgt"])
            opt.step(model.backward())
            return np.asarray(float(loss))
    return f


GPT2 = dict(L=12, H=12, C=768)
TINY = dict(L=2, H=2, C=64)

CASES = [
    # LN fwd: read x, write y -> 2·N·C·4 bytes
    Case("layernorm_fwd", dict(N=8192, C=768), dict(N=67, C=96), "GB/s",
         lambda s: 2 * s["N"] * s["C"] * 4, _ln_make, _ln_fwd),
    # LN fwd+bwd: fwd 2·N·C, bwd reads x, dy and writes dx 3·N·C -> 5·N·C·4 bytes
    Case("layernorm_fwd_bwd", dict(N=8192, C=768), dict(N=67, C=96), "GB/s",
         lambda s: 5 * s["N"] * s["C"] * 4, _ln_make, _ln_fwdbwd),
    # softmax fwd: read x, write y -> 2·N·C·4 bytes
    Case("softmax_fwd", dict(shape=(48, 1024, 1024)), dict(shape=(3, 17, 33)), "GB/s",
         lambda s: 2 * math.prod(s["shape"]) * 4, _sm_make, _sm_fwd),
    # GELU fwd on the MLP activation (B·T, 4C): read x, write y -> 2·N·4C·4 bytes
    Case("gelu_fwd", dict(N=8192, C=3072), dict(N=33, C=40), "GB/s",
         lambda s: 2 * s["N"] * s["C"] * 4, _gelu_make, _gelu_fwd),
    # CE fwd+bwd: fwd reads logits, bwd reads them and writes dlogits -> 3·N·V·4 bytes
    Case("cross_entropy_fwd_bwd", dict(N=1024, V=50257), dict(N=9, V=501), "GB/s",
         lambda s: 3 * s["N"] * s["V"] * 4, _ce_make, _ce_fwdbwd),
    # AdamW: read p, g, m, v, write p, m, v -> 7·P·4 bytes
    Case("adamw_step", dict(P=124_439_808), dict(P=100_003), "GB/s",
         lambda s: 7 * s["P"] * 4, _adamw_make, _adamw),
    # causal attention fwd: QKᵀ and PV over half of the (T, T) scores -> 2·B·H·T²·d FLOPs
    Case("attention_causal_fwd", dict(B=4, H=12, T=1024, d=64), dict(B=1, H=2, T=70, d=8),
         "GFLOP/s", lambda s: 2 * s["B"] * s["H"] * s["T"] ** 2 * s["d"], _attn_make,
         lambda p, d: _attn(p, d, False)),
    # fwd+bwd: backward is 2.5x the forward (5 matmuls vs 2) -> 3.5 x 2·B·H·T²·d FLOPs
    Case("attention_causal_fwd_bwd", dict(B=4, H=12, T=1024, d=64), dict(B=1, H=2, T=70, d=8),
         "GFLOP/s", lambda s: 7 * s["B"] * s["H"] * s["T"] ** 2 * s["d"], _attn_make,
         lambda p, d: _attn(p, d, True)),
    # GPT-2 forward: 2 FLOPs per parameter per token (+ attention, ignored)
    Case("gpt2_forward", dict(B=4, T=256, **GPT2), dict(B=1, T=16, **TINY), "GFLOP/s",
         lambda s: 2 * _nparams(s) * s["B"] * s["T"], _gpt_make,
         None, ref_ok=False),
    # training step: forward + backward (2x) -> 6 FLOPs per parameter per token, + AdamW
    Case("gpt2_train_step", dict(B=4, T=256, **GPT2), dict(B=1, T=16, **TINY), "GFLOP/s",
         lambda s: 6 * _nparams(s) * s["B"] * s["T"], _gpt_make, None, ref_ok=False),
]


def _nparams(s):
    c, v = s["C"], 50257
    return v * c + 1024 * c + s["L"] * (12 * c * c + 13 * c) + 2 * c


def _runner(case, provider, inputs, size):
    if case.name.startswith("gpt2"):
        return _gpt(provider, inputs, case.name == "gpt2_train_step", size)
    return case.run(provider, inputs)


# machine roofline ----------------------------------------------------------------------------

def _triad_kernel():
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]
    return triad


def machine_rates(n=1 << 25, repeats=7):
    """Copy bandwidth of a fused 2-array-read/1-write Numba triad (GB/s) and sgemm GFLOP/s."""
    triad = _triad_kernel()
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    triad(a, b, c, np.float32(2.0))
    bw = 3 * n * 4 / _median(lambda: triad(a, b, c, np.float32(2.0)), repeats)[0] / 1e9
    m = 2048
    x, y = (np.random.default_rng(0).standard_normal((m, m), np.float32) for _ in range(2))
    gf = 2 * m ** 3 / _median(lambda: x @ y, repeats)[0] / 1e9
    return {"triad_GBps": bw, "sgemm_GFLOPps": gf}


def _median(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _validate(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return False
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    return bool(np.allclose(out, ref, rtol=2e-3, atol=2e-3 * scale))


# the grid ------------------------------------------------------------------------------------

TIME_BUDGET_S = 0.5     # fast rows repeat until about this long (at most MAX_REPEATS calls)
MAX_REPEATS = 200


def _repeats(prov, big, quick, call_s, fixed):
    """Timed calls for one provider of a case: a fixed count, or enough for TIME_BUDGET_S."""
    if fixed:
        return fixed
    if quick:
        return 2
    base = 5 if big else 3 if prov == "reference" else 7
    return max(base, min(MAX_REPEATS, int(TIME_BUDGET_S / max(call_s, 1e-9))))


ROUNDS = 5       # each provider's timed calls come in this many blocks, providers taking turns
SETTLE_S = 0.2   # idle before each block: OpenBLAS's workers spin ~0.1 s after a matmul, and
                 # one provider's spinning threads must not bill the next provider's calls


def _interleaved(fns, reps):
    """Median seconds per provider. The providers take turns in ROUNDS blocks, so drift on a
    shared machine lands on all alike; each block starts after SETTLE_S of idle and, for fast
    rows (more calls than blocks), one untimed call that warms the caches for its provider."""
    times = {p: [] for p in fns}
    for r in range(ROUNDS):
        for p, fn in fns.items():
            n = reps[p] * (r + 1) // ROUNDS - reps[p] * r // ROUNDS   # blocks sum to reps[p]
            if n == 0:
                continue
            time.sleep(SETTLE_S)
            if reps[p] > ROUNDS:
                fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[p].append(time.perf_counter() - t0)
    return {p: statistics.median(t) for p, t in times.items()}


def run_grid(*, quick=False, only=None, repeats=None, providers=None, progress=True):
    from tqdm import tqdm

    have_torch = _torch() is not None
    provs = [p for p in providers or ["reference", "numba", "torch"] if p != "cuda"]
    if not have_torch:
        provs = [p for p in provs if p != "torch"]
    cases = [c for c in CASES if not only or any(o in c.name for o in only)]
    if not quick:
        try:
            import nanonorm.gpt  # noqa: F401
        except ImportError:
            cases = [c for c in cases if not c.name.startswith("gpt2")]
    rates = machine_rates(n=1 << 20 if quick else 1 << 25)
    rows = []
    bar = tqdm(cases, disable=not progress, desc="bench", unit="case")
    for case in bar:
        bar.set_postfix_str(case.name)
        size = case.quick if quick else case.full
        big = not quick and (case.name.startswith("gpt2") or case.name == "adamw_step")
        fns, reps, case_rows, checked = {}, {}, {}, None
        for prov in provs:
            if prov == "reference" and not quick and case.name.startswith("gpt2"):
                continue               # the reference model runs minutes per step: skipped
            inputs = case.make(size, np.random.default_rng(0))
            fn = _runner(case, prov, inputs, size)
            t0 = time.perf_counter()
            first = fn()
            first_s = time.perf_counter() - t0
            if big:
                fn()                   # torch's first steps run slow (allocator, kernels' setup)
            t0 = time.perf_counter()
            fn()                       # warm-up, timed to size the repeats
            call_s = time.perf_counter() - t0
            # validation: against the reference's first output (numba where the reference is
            # skipped or stateful: AdamW steps and model steps change their own state)
            if prov in ("reference", "numba") and checked is None:
                checked = np.asarray(first)
            if case.name.startswith("gpt2") and prov == "torch":
                valid = None           # different random init: not comparable elementwise
            elif case.name == "adamw_step":
                valid = bool(np.all(np.isfinite(np.asarray(first))))
                if prov != "reference" and checked is not None:
                    valid = valid and _validate(first, checked)
            else:
                valid = _validate(first, checked) if checked is not None else None
            fns[prov] = fn
            reps[prov] = _repeats(prov, big, quick, call_s, repeats)
            case_rows[prov] = dict(first_s=first_s, valid=valid)
        medians = _interleaved(fns, reps)
        work = case.work(size)
        roof = rates["triad_GBps"] if case.unit == "GB/s" else rates["sgemm_GFLOPps"]
        for prov, med in medians.items():
            first_s, rate = case_rows[prov]["first_s"], work / med / 1e9
            rows.append(dict(case=case.name, size=size, provider=prov, ms=med * 1e3,
                             rate=rate, unit=case.unit, roofline_fraction=rate / roof,
                             first_call_ms=first_s * 1e3,
                             compile_s=max(0.0, first_s - med) if prov == "numba" else None,
                             repeats=reps[prov], validated=case_rows[prov]["valid"]))
        # drop this case's inputs, outputs and models (the loop's names hold the last
        # provider's too) before the next case allocates its own
        fns = fn = first = inputs = checked = None
    by = {(r["case"], r["provider"]): r for r in rows}
    for r in rows:
        t = by.get((r["case"], "torch"))
        r["ratio_to_torch"] = r["ms"] / t["ms"] if t else None
    # the GPU providers (cuda, torch-cuda: ratios against torch on the same GPU)
    from . import gpu
    gpu_reason = gpu.available()
    if gpu_reason is None and (providers is None or "cuda" in providers):
        rows += gpu.cuda_rows(cases, quick=quick, repeats=repeats)
    from nanonorm.machine import environment
    return {"environment": environment(), "machine": rates, "quick": quick, "rows": rows,
            "gpu": gpu_reason or "present", "study": None}


def render_table(result) -> str:
    lines = ["| case | size | provider | median ms | rate | of roofline | vs torch | compile s "
             "| valid |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        size = ",".join(f"{k}={v}" for k, v in r["size"].items())
        ratio = "" if r["ratio_to_torch"] is None else f"{r['ratio_to_torch']:.2f}"
        comp = "" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        lines.append(f"| {r['case']} | {size} | {r['provider']} | {r['ms']:.2f} | "
                     f"{r['rate']:.1f} {r['unit']} | {100 * r['roofline_fraction']:.0f}% | "
                     f"{ratio} | {comp} | {r['validated']} |")
    return "\n".join(lines)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["rows"] if r["provider"] == "numba" and r["ratio_to_torch"]]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    ax.barh([r["case"] for r in rows], [r["ratio_to_torch"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel("nanonorm (numba) time / torch time  (lower is faster)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    from .cli import main
    return main(argv)
