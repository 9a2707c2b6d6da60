"""The microbenchmark grid: cases (bench/cases.py, from the op declarations) × providers.

Each provider runs once and its result is checked against the reference with the tests' error
budget (`nanonorm.testing.assert_close_budget`: at most a small multiple of the reference's
own float32 error against float64) before it is timed: warm-up, then the median of repeats,
the CPU providers of a case taking turns in blocks of calls (fast rows repeat for about half a
second), GPU providers timed with CUDA events. Every row reports ms, GB/s (memory-bound
kernels, from the bytes-moved model of each declaration) or GFLOP/s (matmul-bound ones), the
fraction of this machine's copy bandwidth or matmul rate measured in the same run, and the
ratio to torch on the same device. Numba's compile time (first call minus median) is reported
separately. Writes JSON and a matplotlib chart.
"""
from __future__ import annotations

import time

import numpy as np

from nanonorm.testing import assert_close_budget

from . import timing
from .cases import Case, all_cases
from .providers import CHOICES, PROVIDERS, Provider, gpu_missing

def validate(case: Case, provider: Provider, result, expected) -> tuple[bool | None, str]:
    """(verdict, why): the provider's first result under the error budget; None where the
    result is not comparable (torch's own model weights)."""
    if expected is None or (provider.is_torch and not case.torch_comparable):
        return None, ""
    try:
        assert_close_budget(result, expected.approx, expected.exact, scale=expected.scale,
                            name=f"{case.name} / {provider.name}")
    except AssertionError as e:
        return False, str(e).splitlines()[0]
    return True, ""


def _providers(names) -> list[Provider]:
    wanted = list(names or CHOICES)
    if "cuda" in wanted:
        wanted.append("torch-cuda")                 # the GPU rows' peer
    return [PROVIDERS[n] for n in wanted if PROVIDERS[n].missing() is None]


def _rows_for(case: Case, provs, *, quick, fixed_repeats, gpu_timer):
    """Build, validate and time every provider of one case; its rows."""
    size = case.quick if quick else case.full
    inputs = case.inputs(size)
    expected = case.expected(inputs)
    calls, info = {}, {}
    for prov in provs:
        if prov.name == "reference" and case.heavy and not quick:
            continue                  # the reference model and AdamW: minutes per call
        with prov.context():
            call = case.build(prov, inputs)

            def run(call=call, prov=prov):
                with prov.context():
                    out = call()
                prov.sync()
                return out
        t0 = time.perf_counter()
        first = np.array(prov.host(run()), copy=True)      # later calls may update it
        first_s = time.perf_counter() - t0
        if case.heavy:
            run()                     # torch's first steps run slow (allocator, kernels' setup)
        t0 = time.perf_counter()
        run()                         # warm-up, timed to size the repeats
        call_s = time.perf_counter() - t0
        valid, why = validate(case, prov, first, expected)
        calls[prov.name] = run
        info[prov.name] = dict(first_s=first_s, valid=valid, why=why,
                               reps=timing.repeats(prov.name, case.heavy, quick, call_s,
                                                   fixed_repeats))
    cpu = {p: f for p, f in calls.items() if PROVIDERS[p].device == "cpu"}
    medians = timing.interleaved(cpu, {p: info[p]["reps"] for p in cpu})
    for p, f in calls.items():
        if p not in cpu:
            medians[p] = gpu_timer(f, info[p]["reps"])
    return [dict(case=case.name, size=size, provider=p, ms=med * 1e3,
                 work=case.work(size), unit=case.unit, device=PROVIDERS[p].device,
                 first_call_ms=info[p]["first_s"] * 1e3,
                 compile_s=max(0.0, info[p]["first_s"] - med) if p == "numba" else None,
                 repeats=info[p]["reps"], validated=info[p]["valid"],
                 validation_error=info[p]["why"] or None)
            for p, med in medians.items()]


def run_grid(*, quick=False, only=None, repeats=None, providers=None, progress=True):
    from tqdm import tqdm

    from nanonorm.machine import environment

    cases = [c for c in all_cases() if not only or any(o in c.name for o in only)]
    provs = _providers(providers)
    rates = timing.cpu_rates(n=1 << 20 if quick else 1 << 25)
    gpu_timer = None
    if any(p.device == "cuda" for p in provs):
        gpu_timer = timing.GpuTimer()
        rates.update(timing.gpu_rates(gpu_timer, n=1 << 22 if quick else 1 << 28))
    rows = []
    bar = tqdm(cases, disable=not progress, desc="bench", unit="case")
    for case in bar:
        bar.set_postfix_str(case.name)
        rows += _rows_for(case, provs, quick=quick, fixed_repeats=repeats, gpu_timer=gpu_timer)
    for r in rows:
        gpu = r["device"] == "cuda"
        roof = {("GB/s", False): "triad_GBps", ("GFLOP/s", False): "sgemm_GFLOPps",
                ("GB/s", True): "copy_GBps", ("GFLOP/s", True): "sgemm_GFLOPps_gpu"}
        r["rate"] = r.pop("work") / (r["ms"] / 1e3) / 1e9
        key = roof[r["unit"], gpu]
        r["roofline_fraction"] = r["rate"] / rates[key] if key in rates else None
    by = {(r["case"], r["provider"]): r for r in rows}
    for r in rows:
        peer = by.get((r["case"], "torch-cuda" if r["device"] == "cuda" else "torch"))
        r["ratio_to_torch"] = r["ms"] / peer["ms"] if peer else None
    return {"environment": environment(), "machine": rates, "quick": quick, "rows": rows,
            "gpu": gpu_missing() or "present", "study": None}


def render_table(result) -> str:
    lines = ["| case | size | provider | median ms | rate | of roofline | vs torch | compile s "
             "| valid |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        size = ",".join(f"{k}={v}" for k, v in r["size"].items())
        ratio = "" if r["ratio_to_torch"] is None else f"{r['ratio_to_torch']:.2f}"
        comp = "" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        roof = "" if r["roofline_fraction"] is None else f"{100 * r['roofline_fraction']:.0f}%"
        lines.append(f"| {r['case']} | {size} | {r['provider']} | {r['ms']:.2f} | "
                     f"{r['rate']:.1f} {r['unit']} | {roof} | {ratio} | {comp} | "
                     f"{r['validated']} |")
    return "\n".join(lines)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["rows"] if r["provider"] in ("numba", "cuda")
            and r["ratio_to_torch"]]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    ax.barh([f"{r['case']} ({r['provider']})" for r in rows],
            [r["ratio_to_torch"] for r in rows], color="tab:blue")
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xlabel("nanonorm time / torch time on the same device  (lower is faster)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
