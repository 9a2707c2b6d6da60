"""The GPU check's probes (bench/gpu_check.sh runs each as one step; docs/gpu.md, "One check
script"): what the test suite and the bench grid do not measure.

  python -m nanonorm.bench.gpu_probe env        the CUDA kernels compile and run (nanonorm info)
  python -m nanonorm.bench.gpu_probe kernels    every CUDA kernel at the bench's GPT-2 sizes vs
                                                float64 (the tests' error budget), all outputs,
                                                backward bits repeatable, a side stream
  python -m nanonorm.bench.gpu_probe sync       which calls wait for the GPU (hidden host syncs)
  python -m nanonorm.bench.gpu_probe bench DIR  the bench grid's GPU rows, checked, + back-to-back
  python -m nanonorm.bench.gpu_probe gpt DIR    GPT-2 small at B=8, T=1024 vs torch eager
  python -m nanonorm.bench.gpu_probe sanitize   small launches of every kernel, for
                                                compute-sanitizer (racecheck, memcheck)

GPU_CHECK_DRY=1 (`gpu_check.sh --dry`) needs no GPU: numba-cuda's simulator with NumPy arrays
routed to the CUDA kernels, tiny sizes, torch on the CPU. It checks this script, never a GPU.
Each probe prints `RESULT <one line>` last and exits non-zero when a check fails.
"""
from __future__ import annotations

import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DRY = os.environ.get("GPU_CHECK_DRY") == "1"

# GPT-2 small at the source study's size; the dry run's stand-in runs in seconds on a CPU
GPT_SIZE = dict(preset="tiny", B=2, T=16) if DRY else dict(preset="gpt2", B=8, T=1024)


def result(line: str, ok: bool = True) -> int:
    print(f"RESULT {line}", flush=True)
    return 0 if ok else 1


# nanonorm's precisions (nanonorm.precision's modes) and the torch row each one is compared with
NANONORM_MODES = {"fp32": "highest", "tf32": "high", "bf16-matmul": "medium"}
TORCH_PEER = {"fp32": "fp32", "tf32": "tf32", "bf16-matmul": "bf16-autocast"}


def _dry_on_simulator(fn):
    """fn, which in the dry run has NumPy arrays dispatched to the CUDA kernels on the
    simulator (as the end-to-end tests' NANONORM_E2E_LIB=simulator does)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if not DRY:
            return fn(*args, **kwargs)
        from nanonorm.dispatch import cuda_kernels_on_numpy
        with cuda_kernels_on_numpy():
            return fn(*args, **kwargs)
    return run


def _cuda_specs():
    from nanonorm import opspec
    from nanonorm.dispatch import kernels
    return [s for s in opspec.specs() if s.forward_name in kernels("cuda")]


def _on_device(table: dict) -> dict:
    """`table` with host arrays in and out, for the tests' checkers: arguments and caches go to
    the GPU, results and caches come back (so kernel and reference caches pair), and an
    in-place update's arrays are copied back."""
    import cupy

    def move(a, to_gpu: bool):
        if isinstance(a, tuple):                 # a cache (NamedTuple), grads, a shape
            items = [move(x, to_gpu) for x in a]
            return type(a)(*items) if hasattr(a, "_fields") else tuple(items)
        if to_gpu and isinstance(a, np.ndarray):
            return cupy.asarray(a)
        return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else a

    def wrap(f):
        def call(*args, **kw):
            dev = [move(a, True) for a in args]
            out = f(*dev, **kw)
            if out is None:                      # in place: p, m, v of AdamW
                for a, d in zip(args, dev):
                    if isinstance(a, np.ndarray):
                        a[...] = cupy.asnumpy(d)
            return move(out, False)
        return call
    return {op: wrap(f) for op, f in table.items()}


def _table():
    from nanonorm.dispatch import kernels
    return kernels("cuda") if DRY else _on_device(kernels("cuda"))


# env -----------------------------------------------------------------------------------------

def env() -> int:
    from nanonorm.cli import main
    from nanonorm.machine import cuda_facts, cuda_kernels_run
    main(["info"])
    facts = cuda_facts()
    run = cuda_kernels_run(facts)
    want = "simulator" if DRY else "gpu"
    ok = run["ran"] is True and run["on"] == want
    return result(f"CUDA kernels ran on the {want}" if ok else
                  f"CUDA kernels did not run on the {want}: {run['error'] or run['on']}", ok)


# kernels: full sizes against float64 ---------------------------------------------------------

# The bench rows' GPT-2 sizes, cut where the host's float64 reference would take minutes but
# the kernel's work does not change with the size: the same row widths (C=768, V=50257,
# T=1024), rows past LayerNorm's 512 backward blocks, elementwise arrays past the grid-stride
# cap (65535 blocks x 256 threads); fewer batch rows.
CHECK_SIZES = {"adamw_step": {"P": 16_777_259}, "gelu": {"shape": (6144, 3072)},
               "bias_gelu": {"rows": 6144}, "scaled_dot_product_attention": {"lead": (1, 12)},
               "cross_entropy": {"lead": (256,)}, "softmax": {"shape": (12, 1024, 1024)},
               "log_softmax": {"shape": (256, 50257), "axis": -1}}


def _sizes(spec, rng, big: bool):
    if not big:
        return [spec.test_size(rng)]
    rows = [r.full for r in spec.bench] or [{}]
    sizes = [{**full, **CHECK_SIZES.get(spec.name, {})} for full in rows]
    sizes = [s if s else spec.test_size(rng) for s in sizes]
    return [s for i, s in enumerate(sizes) if s not in sizes[:i]]


@_dry_on_simulator
def kernels(big: bool = not DRY, sizes=None) -> int:
    """Every CUDA kernel's outputs (forward and every gradient, in all pairings with the
    reference; an update's arrays) under the tests' error budget, float32 against float64."""
    from nanonorm.testing import check_spec
    table, failed, n = _table(), [], 0
    for spec in _cuda_specs():
        rng = np.random.default_rng(0)
        for size in (sizes(spec) if sizes else _sizes(spec, rng, big)):
            t0 = time.perf_counter()
            try:
                check_spec(spec, table, rng, np.float32, size=size)
                verdict = "ok"
            except Exception as e:    # over the budget, or a compile or launch error
                failed.append(spec.name)
                verdict = f"FAILED {type(e).__name__}: {(str(e) or '?').splitlines()[0]}"
            n += 1
            print(f"{spec.name:30s} {_short(size):60s} {time.perf_counter() - t0:6.1f}s {verdict}",
                  flush=True)
    for extra in [] if sizes else [_repeatable_backward] + ([] if DRY else [_side_stream]):
        try:
            failed += extra(table, big)
        except Exception as e:    # a launch error, out of memory: reported, not a traceback
            failed.append(f"{extra.__name__}: {type(e).__name__}: {e}")
    what = "GPT-2 widths" if big else "small sizes"
    return result(f"{n} kernel checks at {what} vs float64: " +
                  (f"FAILED {', '.join(failed)}" if failed else "all within the budget"),
                  not failed)


def _short(size: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in size.items() if k not in ("kind", "scale"))[:60]


def _repeatable_backward(table, big) -> list[str]:
    """Each backward twice on one cache: the same bits (no atomics, fixed reduction orders)."""
    failed = []
    for spec in _cuda_specs():
        if spec.update:
            continue
        rng = np.random.default_rng(1)
        s = spec.inputs(rng, _sizes(spec, rng, big)[0])
        args = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                else a for a in s.args]
        _, cache = table[spec.forward_name](*args, **s.kwargs)
        dy = s.dy.astype(np.float32)
        one, two = (table[spec.backward_name](dy, cache) for _ in range(2))
        one, two = (g if isinstance(g, tuple) else (g,) for g in (one, two))
        if not all(a is None and b is None or np.array_equal(a, b, equal_nan=True)
                   for a, b in zip(one, two)):
            failed.append(f"{spec.name} backward not repeatable")
    print(f"backward bits repeatable: {'no: ' + ', '.join(failed) if failed else 'yes'}")
    return failed


def _side_stream(table, big) -> list[str]:
    """On a non-blocking CuPy stream a kernel must run after the work that feeds it there."""
    import cupy

    import nanonorm.functional as F
    a = cupy.random.default_rng(1).standard_normal((8192, 8192), dtype=cupy.float32)
    got = {}
    for label in ("null", "side"):
        with (cupy.cuda.Stream(non_blocking=True) if label == "side" else cupy.cuda.Stream.null):
            x = (a @ a)[:4096, :768] * 1e-2            # ~10 ms of producer work on this stream
            got[label] = cupy.asnumpy(F.layer_norm_forward(x, (768,))[0])
    same = np.array_equal(got["null"], got["side"])
    print(f"side stream: {'same bits as the null stream' if same else 'DIFFERENT'}")
    return [] if same else ["side stream"]


# sync: which calls make the host wait for the GPU ----------------------------------------------

def _calls():
    """name -> zero-argument call, GPT-2-like widths (tiny in the dry run)."""
    import contextlib

    import nanonorm
    import nanonorm.functional as F
    from nanonorm.dispatch import resolve
    xp = np if DRY else __import__("cupy")
    rng = np.random.default_rng(0)
    n, c, v, (b, h, t, d) = (3, 40, 64, (1, 2, 5, 4)) if DRY else \
        (4096, 768, 50257, (4, 12, 256, 64))

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))
    x, w, q, z = arr(n, c), arr(c), arr(b, h, t, d), arr(n, v)
    tgt = xp.asarray(rng.integers(0, v, n))
    _, ln = F.layer_norm_forward(x, (c,), w, w)
    _, sm = F.softmax_forward(x)
    _, ge = F.gelu_forward(x)
    _, ce = F.cross_entropy_forward(z, tgt)
    _, at = F.scaled_dot_product_attention_forward(q, q, q, causal=True)
    p, m, s = arr(n * c), xp.zeros(n * c, np.float32), xp.zeros(n * c, np.float32)
    calls = {
        "layer_norm_forward": lambda: F.layer_norm_forward(x, (c,), w, w),
        "layer_norm_backward": lambda: F.layer_norm_backward(x, ln),
        "softmax_forward": lambda: F.softmax_forward(x),
        "softmax_backward": lambda: F.softmax_backward(x, sm),
        "gelu_forward": lambda: F.gelu_forward(x),
        "gelu_backward": lambda: F.gelu_backward(x, ge),
        "cross_entropy_forward": lambda: F.cross_entropy_forward(z, tgt),
        "cross_entropy_backward": lambda: F.cross_entropy_backward(xp.asarray(1.0, np.float32),
                                                                   ce),
        "attention_forward": lambda: F.scaled_dot_product_attention_forward(q, q, q,
                                                                            causal=True),
        "attention_backward": lambda: F.scaled_dot_product_attention_backward(q, at),
        "adamw_step kernel": lambda: resolve("adamw_step", p)(
            p, x.reshape(-1), m, s, lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8,
            weight_decay=0.1, step=1),
    }
    # the model: GPT-2 small's widths, a short batch (tiny and on the Numba kernels when dry:
    # a whole model on the simulator takes minutes)
    on_model = (lambda: nanonorm.use_impl("numba")) if DRY else contextlib.nullcontext
    cfg = nanonorm.GPTConfig.preset("tiny" if DRY else "gpt2")
    model = nanonorm.GPT(cfg, device="cpu" if DRY else "cuda")
    host_ids = rng.integers(0, cfg.vocab_size, (2, 8 if DRY else 128))
    ids = xp.asarray(host_ids)
    opt = model.configure_optimizer(lr=1e-5)

    def fwd(i=ids):
        with on_model():
            return model.forward(i, i, return_logits=False)

    def fwd_bwd(i=ids):
        fwd(i)
        with on_model():
            return model.backward()
    grads = fwd_bwd()

    def adamw(g):
        with on_model():
            opt.step(g)
    calls.update({"gpt_forward": fwd, "gpt_forward_backward": fwd_bwd,
                  "AdamW.step (GPT)": lambda: adamw(grads),
                  "gpt_train_step (host ids)": lambda: adamw(fwd_bwd(host_ids)),
                  # ids already on the GPU are range-checked there; AdamW.step reads those
                  # flags before it changes anything: the one wait by design
                  "gpt_train_step (device ids)": lambda: adamw(fwd_bwd())})
    return calls


EXPECTED_WAITS = {"gpt_train_step (device ids)"}


def _bad_device_id_raises_at_the_step() -> str:
    """A token id past the vocabulary, on the GPU: no error in forward or backward (no sync),
    a ValueError at AdamW.step, before any parameter changes. '' when it behaves."""
    import cupy

    import nanonorm
    model = nanonorm.GPT(nanonorm.GPTConfig.preset("tiny"), device="cuda")
    opt = model.configure_optimizer(lr=1e-3)
    before = {n: cupy.asnumpy(p) for n, p in model.parameters().items()}
    ids = cupy.asarray(np.array([[1, 2, 300]]))                 # vocab 256
    model.forward(ids, ids % 256, return_logits=False)
    grads = model.backward()
    try:
        opt.step(grads)
        return "a bad device id did not raise at AdamW.step"
    except ValueError as e:
        if "idx must lie in [0, 256)" not in str(e):
            return f"wrong message: {e}"
    changed = [n for n, p in model.parameters().items()
               if not np.array_equal(cupy.asnumpy(p), before[n])]
    return f"parameters changed: {changed[:3]}" if changed else ""


SPIN = r'''extern "C" __global__ void spin(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) { }
}'''


@_dry_on_simulator
def sync() -> int:
    """Queue a long GPU kernel (a clock spin, several times the call's own time), record an
    event after it, make the call, then ask whether the event has completed, without waiting:
    if it has, the call waited for the GPU, a hidden host sync."""
    if DRY:
        calls = _calls()
        for name, fn in calls.items():
            fn()
            print(f"{name:28s} ran (no GPU: not measurable)", flush=True)
        return result(f"no GPU: not measurable ({len(calls)} calls ran once)")
    import cupy
    spin = cupy.RawKernel(SPIN, "spin")
    spin((1,), (1,), (np.int64(1),))                        # compiled before it is timed
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    spin((1,), (1,), (np.int64(10**8),))
    e1.record()
    e1.synchronize()
    cycles_per_ms = 10**8 / cupy.cuda.get_elapsed_time(e0, e1)
    calls, waited = _calls(), []
    for name, fn in calls.items():
        fn()
        fn()                                                # compiled, memory pool grown
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        fn()
        cupy.cuda.Device().synchronize()
        # the spin outlasts the whole call (host and GPU) 4x: only a wait can see it end
        spin_ms = min(5000.0, max(50.0, 4e3 * (time.perf_counter() - t0)))
        spin((1,), (1,), (np.int64(spin_ms * cycles_per_ms),))
        done = cupy.cuda.Event(disable_timing=True)
        done.record()
        t0 = time.perf_counter()
        fn()
        host_ms = 1e3 * (time.perf_counter() - t0)
        synced = done.done                                  # cudaEventQuery: no waiting
        cupy.cuda.Device().synchronize()
        if synced:
            waited.append(name)
        print(f"{name:28s} {'WAITS for the GPU' if synced else 'no host sync':18s} "
              f"call {host_ms:8.2f} ms on the host, {spin_ms:6.0f} ms queued before it",
              flush=True)
    unexpected = sorted(set(waited) - EXPECTED_WAITS)
    bad_id = _bad_device_id_raises_at_the_step()
    return result(f"hidden host syncs: {len(unexpected)} unexpected of {len(calls)} calls"
                  + (f" ({', '.join(unexpected)})" if unexpected else "")
                  + f"; by design: {', '.join(sorted(set(waited) & EXPECTED_WAITS)) or 'none'}"
                  + f"; bad device id: {bad_id or 'raised at AdamW.step, nothing changed'}",
                  not unexpected and not bad_id)


# bench: the grid's GPU rows, checked ------------------------------------------------------------

def bench(out: Path) -> int:
    """`python -m bench --providers cuda` (torch's GPU rows come along) for every case, then
    checks the JSON: every case has a validated cuda row, no row failed validation. Adds
    back-to-back timings: the grid times one call per repeat, each ending in a device sync."""
    from .cases import all_cases
    from .cli import main
    path = out / "bench.json"
    if DRY:     # no cuda rows without a GPU: the Numba rows stand in for the checks below
        argv = ["--quick", "--providers", "numba", "cuda", "--only", "gelu_fwd",
                "--only", "layernorm_fwd"]
    else:       # every case by name: a bare grid would add the CPU-only conditions rows
        argv = ["--providers", "cuda"] + [a for c in all_cases() for a in ("--only", c.name)]
    rc = main(argv + ["--no-progress", "--json", str(path), "--plot", str(out / "bench.png")])
    data = json.loads(path.read_text())
    rows = data["rows"]
    want = "numba" if DRY else "cuda"
    cases = {r["case"] for r in rows}
    ours = {r["case"]: r for r in rows if r["provider"] == want}
    problems = [f"{r['case']}/{r['provider']}: {r['validation_error']}" for r in rows
                if r["validated"] is False]
    problems += [f"{c}: no validated {want} row" for c in sorted(cases)
                 if c not in ours or ours[c]["validated"] is not True]
    if not DRY:
        data["back_to_back"] = _back_to_back([c for c in all_cases() if not c.heavy])
        path.write_text(json.dumps(data, indent=2, default=str))
    for p in problems:
        print("PROBLEM", p)
    ratios = [r["ratio_to_torch"] for r in ours.values() if r["ratio_to_torch"]]
    vs = f", median time vs torch {statistics.median(ratios):.2f}x" if ratios else ""
    note = "" if not DRY else f" (dry: numba rows; GPU rows skipped: {data['gpu']})"
    return result(f"bench: {len(ours)} {want} rows of {len(cases)} cases, "
                  f"{len(problems)} problems{vs}{note}", rc == 0 and not problems)


def _back_to_back(cases, target_ms: float = 2.0) -> list[dict]:
    """Per-call ms of the GPU providers timed k calls at a time (k: ~2 ms of work), no sync
    between them, the L2 flushed before each repeat: launch latency hidden, as in a model."""
    import cupy

    from . import timing
    from .providers import PROVIDERS
    flush = timing.GpuTimer().flush_buf
    provs = [p for p in (PROVIDERS["cuda"], PROVIDERS["torch-cuda"]) if not p.missing()]
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    rows = []
    for case in cases:
        inputs = case.inputs(case.full)
        for prov in provs:
            with prov.context():
                call = case.build(prov, inputs)

            def run(call=call, prov=prov):
                with prov.context():
                    call()
            run()
            prov.sync()
            t0 = time.perf_counter()
            run()
            prov.sync()
            k = max(1, min(200, round(target_ms / 1e3 / (time.perf_counter() - t0))))
            times = []
            for _ in range(7):
                flush.fill(0)
                e0.record()
                for _ in range(k):
                    run()
                e1.record()
                e1.synchronize()
                times.append(cupy.cuda.get_elapsed_time(e0, e1) / k)
            rows.append(dict(case=case.name, provider=prov.name, calls_per_repeat=k,
                             ms=statistics.median(times)))
            print(f"back to back: {case.name:28s} {prov.name:10s} {k:4d} calls/repeat "
                  f"{rows[-1]['ms']:.4f} ms/call", flush=True)
    return rows


# gpt: GPT-2 small, nanonorm against torch eager -------------------------------------------------

PRECISIONS = {"nanonorm": tuple(NANONORM_MODES), "torch": ("fp32", "tf32", "bf16-autocast")}


def gpt(out: Path) -> int:
    """One fresh process per nanonorm precision (each measures its own memory peak) and one
    for torch's three; a table and gpt.json."""
    rows = []
    for who, mode in [("nanonorm", m) for m in PRECISIONS["nanonorm"]] + [("torch", "all")]:
        proc = subprocess.run([sys.executable, "-m", __spec__.name, "gpt-one", who, mode],
                              capture_output=True, text=True)
        print(proc.stdout, proc.stderr[-3000:], sep="", flush=True)
        rows += [json.loads(line[5:]) for line in proc.stdout.splitlines()
                 if line.startswith("JSON ")]
        if proc.returncode:
            why = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
            rows.append(dict(who=who, precision=mode, error=f"exit {proc.returncode}: {why}"))
        (out / "gpt.json").write_text(json.dumps(dict(GPT_SIZE, rows=rows), indent=2))
    print(_gpt_table(rows))
    failed = [f"{r['who']} {r['precision']}" for r in rows if r.get("error")]
    base = {r["precision"]: r for r in rows if r["who"] == "torch" and "step_ms" in r}
    peer = lambda r: base[TORCH_PEER[r["precision"]]]                     # noqa: E731
    ratios = [f"{r['precision']}: fwd {r['forward_ms'] / peer(r)['forward_ms']:.2f}x"
              f", step {r['step_ms'] / peer(r)['step_ms']:.2f}x"
              for r in rows if r["who"] == "nanonorm" and "step_ms" in r and
              TORCH_PEER[r["precision"]] in base]
    size = f"{GPT_SIZE['preset']} B={GPT_SIZE['B']} T={GPT_SIZE['T']}"
    return result(f"{size}: nanonorm time / torch time " + ("; ".join(ratios) or "n/a") +
                  (f"; FAILED {', '.join(failed)}" if failed else ""), not failed)


def _gpt_table(rows) -> str:
    lines = ["| who | precision | forward ms | train step ms | peak GiB | loss | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if r.get("error") or r.get("skipped"):
            lines.append(f"| {r['who']} | {r['precision']} | | | | | "
                         f"{r.get('error') or r['skipped']} |")
        else:
            lines.append(f"| {r['who']} | {r['precision']} | {r['forward_ms']:.1f} | "
                         f"{r['step_ms']:.1f} | {r['peak_GiB']:.2f} | {r['loss']:.3f} | "
                         f"{r['note']} |")
    return "\n".join(lines)


def _median_ms(fn, reps: int, clock, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    return statistics.median(clock(fn) for _ in range(reps))


def _event_clock(new_event, elapsed_ms):
    """Milliseconds of one call between two events of the library (CuPy's, torch's)."""
    def clock(fn):
        a, b = new_event(), new_event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        return elapsed_ms(a, b)
    return clock


def _cpu_clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0)


def _check_loss(row: dict, vocab: int) -> dict:
    """A random-init GPT's loss is about ln(vocab): anything else is a broken step."""
    if not (math.isfinite(row["loss"]) and abs(row["loss"] - math.log(vocab)) < 1.5):
        row["error"] = f"loss {row['loss']:.4g}, expected about ln V = {math.log(vocab):.2f}"
    return row


def gpt_one(who: str, mode: str) -> None:
    """One process's rows: nanonorm at one precision, or torch at all three. Prints JSON lines."""
    import nanonorm
    import nanonorm.precision
    from nanonorm.backend import to_numpy
    cfg = nanonorm.GPTConfig.preset(GPT_SIZE["preset"])
    B, T, V = GPT_SIZE["B"], GPT_SIZE["T"], cfg.vocab_size
    rng = np.random.default_rng(0)
    idx, tgt = (rng.integers(0, V, (B, T)) for _ in range(2))
    reps = dict(fwd=2, step=2) if DRY else dict(fwd=5, step=5)
    if who == "nanonorm":
        nanonorm.precision.set_float32_matmul_precision(NANONORM_MODES[mode])
        device = "cpu" if DRY else "cuda"
        model = nanonorm.GPT(cfg, seed=0, device=device)
        xp = model.xp
        i, t = xp.asarray(idx), xp.asarray(tgt)
        opt = model.configure_optimizer(lr=1e-5)
        losses = []

        def step():
            _, loss = model.forward(i, t, return_logits=False)
            opt.step(model.backward())
            losses.append(loss)
        if DRY:
            clock, peak = _cpu_clock, lambda: 0.0
        else:
            import cupy
            clock = _event_clock(cupy.cuda.Event, cupy.cuda.get_elapsed_time)
            peak = lambda: cupy.get_default_memory_pool().total_bytes() / 2**30   # noqa: E731
        row = dict(who=who, precision=mode, forward_ms=_median_ms(lambda: model.forward(i),
                                                                 reps["fwd"], clock),
                   step_ms=_median_ms(step, reps["step"], clock), peak_GiB=peak(),
                   loss=float(to_numpy(losses[-1])),
                   note=("CPU, Numba (dry run)" if DRY else "CuPy pool high-water") +
                   f"; matmul precision {NANONORM_MODES[mode]}")
        print("JSON", json.dumps(_check_loss(row, V)), flush=True)
        return
    try:
        import torch
        import transformers
    except ImportError as e:
        for m in PRECISIONS["torch"]:
            print("JSON", json.dumps(dict(who=who, precision=m, skipped=f"not installed: {e}")))
        return
    dev = "cpu" if DRY else "cuda"
    tc = transformers.GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                                 vocab_size=V, n_positions=cfg.block_size, resid_pdrop=0.0,
                                 embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
                                 bos_token_id=V - 1, eos_token_id=V - 1)
    tm = transformers.GPT2LMHeadModel(tc).to(dev)              # random init: no download
    ti, tt = (torch.as_tensor(a, device=dev) for a in (idx, tgt))
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1)
    clock = _cpu_clock if DRY else _event_clock(
        lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b))
    for m in PRECISIONS["torch"]:
        torch.set_float32_matmul_precision("high" if m == "tf32" else "highest")   # TF32 or not
        cast = torch.autocast(dev, dtype=torch.bfloat16, enabled=m == "bf16-autocast")
        losses = []

        def fwd():
            with torch.no_grad(), cast:
                tm(ti)

        def step():
            with cast:
                logits = tm(ti).logits
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V).float(),
                                                         tt.reshape(-1))
            topt.zero_grad(set_to_none=True)
            loss.backward()
            topt.step()
            losses.append(loss.detach())
        if not DRY:
            torch.cuda.reset_peak_memory_stats()
        tm.eval()
        f = _median_ms(fwd, reps["fwd"], clock)
        tm.train()
        s = _median_ms(step, reps["step"], clock)
        row = dict(who=who, precision=m, forward_ms=f, step_ms=s,
                   peak_GiB=0.0 if DRY else torch.cuda.max_memory_allocated() / 2**30,
                   loss=float(losses[-1]),
                   note=f"torch {torch.__version__}, attention "
                        f"{getattr(tm.config, '_attn_implementation', '?')}")
        print("JSON", json.dumps(_check_loss(row, V)), flush=True)


# sanitize: small launches of every kernel, for compute-sanitizer ------------------------------

# widths past one block of 256 threads and odd, so every reduction tree and tail runs
SANITIZE_SIZES = {"layer_norm": {"lead": (37,), "norm": (771,)},
                  "softmax": {"shape": (5, 7, 1031)}, "log_softmax": {"shape": (9, 1031)},
                  "gelu": {"shape": (37, 771)}, "bias_gelu": {"rows": 37, "C": 771},
                  "cross_entropy": {"lead": (9,), "V": 5001},
                  "scaled_dot_product_attention": {"lead": (1, 2), "T": 300, "S": 300},
                  "adamw_step": {"P": 100003}}


def sanitize() -> int:
    def sizes(spec):
        rows = [r.quick for r in spec.bench] or [{}]
        return [{**rows[0], **SANITIZE_SIZES.get(spec.name, {})}]
    return kernels(big=False, sizes=None if DRY else sizes)


def main(argv) -> int:
    what, where = (argv + ["", ""])[:2]
    if what == "gpt-one":
        gpt_one(argv[1], argv[2])
        return 0
    probes = {"env": env, "kernels": kernels, "sync": sync, "sanitize": sanitize,
              "bench": lambda: bench(Path(where)), "gpt": lambda: gpt(Path(where))}
    if what not in probes or what in ("bench", "gpt") and not where:
        print(f"usage: python -m nanonorm.bench.gpu_probe {{{','.join(probes)}}} "
              f"[DIR: where bench and gpt write]", file=sys.stderr)
        return 2
    return probes[what]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
