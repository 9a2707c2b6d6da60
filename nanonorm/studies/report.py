"""Run every study and write the report: report.md, report.html, one PNG per figure and
results.json holding every number shown, plus the environment it ran in.

A study that fails is recorded with its error and the others still run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from . import (attention_scaling, document, instability, layernorm_stats, ln_params,
               param_counts, sections, timing)


@dataclasses.dataclass(frozen=True)
class Options:
    quick: bool = False
    seed: int = 0
    checkpoint: str | None = None
    timing_size: dict | None = None   # overrides timing.SIZES (tests use a tiny one)
    timing_repeats: int = 5
    timing_steps: int = 5


@dataclasses.dataclass(frozen=True)
class Study:
    key: str
    title: str
    compute: Callable[[Options], dict]
    figures: tuple[tuple[str, Callable[[dict], object]], ...]
    section: Callable[[dict, list[str]], list[tuple]]


def _ln_params(o: Options) -> dict:
    params, label = ln_params.load_parameters(o.checkpoint, seed=o.seed)
    return {**ln_params.layernorm_parameters(params, label=label),
            "source": "checkpoint" if o.checkpoint else "fresh", "checkpoint": o.checkpoint}


STUDIES = (
    Study("repeated_products", "1. repeated products",
          lambda o: instability.run(seed=o.seed),
          (("1-repeated-products.png", instability.plot),), sections.repeated_products),
    Study("layernorm_scope", "2. LayerNorm scope",
          lambda o: layernorm_stats.normalization_scope(seed=o.seed),
          (("2-layernorm-scope.png", layernorm_stats.plot_scope),), sections.layernorm_scope),
    Study("gamma_beta", "3. γ and β",
          lambda o: layernorm_stats.gamma_beta(seed=o.seed),
          (("3-gamma-beta.png", layernorm_stats.plot_gamma_beta),), sections.gamma_beta),
    Study("qk_std", "4. std(QKᵀ)",
          lambda o: {"single": attention_scaling.qk_std(seed=o.seed),
                     "sweep": attention_scaling.qk_std_sweep(seed=o.seed)},
          (("4-qk-std.png", lambda r: attention_scaling.plot_qk_std(r["single"], r["sweep"])),),
          sections.qk_std),
    Study("softmax_scaling", "5. softmax scaling",
          lambda o: attention_scaling.softmax_scaling(seed=o.seed),
          (("5-softmax-scaling.png", attention_scaling.plot_softmax),), sections.softmax_scaling),
    Study("ln_parameters", "6. LayerNorm parameters", _ln_params,
          (("6-ln-parameters.png", ln_params.plot),), sections.ln_parameters),
    Study("parameter_counts", "7. parameter counts",
          lambda o: {"counts": param_counts.parameter_counts(),
                     "tying": param_counts.weight_tying(seed=o.seed)},
          (("7-parameter-counts.png", lambda r: param_counts.plot(r["counts"], r["tying"])),),
          sections.parameters),
    Study("timing", "8. timing",
          lambda o: timing.run(mode="quick" if o.quick else "full", size=o.timing_size,
                               repeats=o.timing_repeats, steps=o.timing_steps, seed=o.seed),
          (("8-timing.png", timing.plot),), sections.timing_section),
)
SEED_FIGURES = {"repeated_products": instability.SEED, "layernorm": layernorm_stats.SEED,
                "attention": attention_scaling.SEED, "ln_parameters": ln_params.SEED,
                "parameter_counts": param_counts.SEED, "timing": timing.SEED}


def run_report(out="nanonorm-report", options: Options = Options(), *, studies=None,
               progress: bool = True) -> dict:
    """Run `studies` (default: STUDIES), write everything under `out`, return the
    results.json content."""
    from ..machine import environment

    studies = STUDIES if studies is None else studies

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {"options": dataclasses.asdict(options), "environment": environment(),
               "seed_figures": SEED_FIGURES, "studies": {}, "errors": {}, "seconds": {}}
    blocks = []
    for study in tqdm(studies, desc="nanonorm report", unit="study", disable=not progress):
        t0 = time.perf_counter()
        try:
            r = study.compute(options)
            figs = []
            for name, plot in study.figures:
                plot(r).savefig(out / name, dpi=110)
                figs.append(name)
            results["studies"][study.key] = r
            blocks += study.section(r, figs)
        except Exception as e:  # one broken study must not lose the others' results
            results["errors"][study.key] = "".join(traceback.format_exception_only(e)).strip()
            blocks += [("h", 2, study.title), ("p", f"**This study failed:** `{e!r}`")]
            traceback.print_exc()
        results["seconds"][study.key] = time.perf_counter() - t0
    results["seconds"]["total"] = time.perf_counter() - start
    head = _header(results, options)
    (out / "report.md").write_text(document.to_markdown(head + blocks), encoding="utf-8")
    (out / "report.html").write_text(document.to_html(head + blocks, "nanonorm report"),
                                     encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1,
                                                 allow_nan=False, ensure_ascii=False),
                                      encoding="utf-8")
    return results


def _header(results: dict, o: Options) -> list[tuple]:
    env = results["environment"]
    sec = results["seconds"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    rows = [["date", env["date"]], ["python", env["python"]], ["platform", env["platform"]],
            ["CPU", f"{env['cpu']} ({env['cpu_count']} logical cores, {env['cpu_simd']})"],
            ["NumPy BLAS", env["blas"] or "not reported"],
            ["GPU", env["gpu"] or "none found"], ["versions", versions]]
    cmd = "nanonorm report" + (" --quick" if o.quick else "") + (
        f" --checkpoint {o.checkpoint}" if o.checkpoint else "") + f" --seed {o.seed}"
    failed = results["errors"]
    return [("h", 1, "nanonorm report"),
            ("p", "The experiments of the source documents (`shared/seeds/`, Vietnamese course "
                  "notes) rerun with nanonorm's own LayerNorm, softmax and GPT-2. Each section "
                  "quotes the seed's figures beside what was measured here; every number is "
                  "also in `results.json`."),
            ("p", f"`{cmd}` took {sec['total']:.1f} s ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in sec.items() if k != "total") + ")."
                  + (f" **Failed studies: {', '.join(failed)}.**" if failed else "")),
            ("h", 2, "Environment"), ("table", ["", "this run"], rows)]


def _jsonable(x):
    """Plain JSON: inf/nan become strings, tuples lists, NumPy scalars Python numbers."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
