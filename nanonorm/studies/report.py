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

from . import DURATION
from . import (attention_scaling, convergence, document, instability, layernorm_stats,
               ln_params, param_counts, sections, sections_gpt, sources, timing)

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Options:
    quick: bool = False
    seed: int = 0
    checkpoint: str | None = None
    timing_size: dict | None = None   # overrides timing.SIZES (tests use a tiny one)
    timing_repeats: int = 5
    timing_steps: int = 5

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


@dataclasses.dataclass(frozen=True)
class Study:
    key: str
    title: str
    note: int                                       # the source note's number (sources.NOTES)
    compute: Callable[[Options, Progress], dict]    # progress(text) tells what it is doing
    figures: tuple[tuple[str, Callable[[dict], object]], ...]
    section: Callable[[dict, list[str]], list[tuple]]


def _ln_params(o: Options, progress: Progress) -> dict:
    params, source = ln_params.load_parameters(o.checkpoint, mode=o.mode, seed=o.seed,
                                               progress=progress)
    return {**ln_params.layernorm_parameters(params, label=source["label"]), "source": source,
            "checkpoint": o.checkpoint}


def _tying(o: Options, progress: Progress) -> dict:
    return {"counts": param_counts.parameter_counts(),
            "tying": param_counts.weight_tying(seed=o.seed, steps=15 if o.quick else 100,
                                               progress=progress)}


STUDIES = (
    Study("repeated_products", "1. repeated products", 1,
          lambda o, p: instability.run(seed=o.seed),
          (("1-repeated-products.png", instability.plot),), sections.repeated_products),
    Study("layernorm_scope", "2. LayerNorm scope", 1,
          lambda o, p: layernorm_stats.normalization_scope(seed=o.seed),
          (("2-layernorm-scope.png", layernorm_stats.plot_scope),), sections.layernorm_scope),
    Study("gamma_beta", "3. γ and β", 1,
          lambda o, p: layernorm_stats.gamma_beta(seed=o.seed),
          (("3-gamma-beta.png", layernorm_stats.plot_gamma_beta),), sections.gamma_beta),
    Study("qk_std", "4. std(QKᵀ)", 2,
          lambda o, p: {"single": attention_scaling.qk_std(seed=o.seed),
                        "sweep": attention_scaling.qk_std_sweep(seed=o.seed)},
          (("4-qk-std.png", lambda r: attention_scaling.plot_qk_std(r["single"], r["sweep"])),),
          sections.qk_std),
    Study("softmax_scaling", "5. softmax scaling", 2,
          lambda o, p: attention_scaling.softmax_scaling(seed=o.seed),
          (("5-softmax-scaling.png", attention_scaling.plot_softmax),), sections.softmax_scaling),
    Study("ln_parameters", "6. LayerNorm parameters", 2, _ln_params,
          (("6-ln-parameters.png", ln_params.plot),), sections_gpt.ln_parameters),
    Study("parameter_counts", "7. parameter counts and weight tying", 3, _tying,
          (("7-parameter-counts.png", lambda r: param_counts.plot(r["counts"], r["tying"])),),
          sections_gpt.parameters),
    Study("timing", "8. timing", 4,
          lambda o, p: timing.run(mode=o.mode, size=o.timing_size, repeats=o.timing_repeats,
                                  steps=o.timing_steps, seed=o.seed, progress=p),
          (("8-timing.png", timing.plot),), sections_gpt.timing_section),
    Study("convergence", "9. LayerNorm and convergence", 1,
          lambda o, p: convergence.run(mode=o.mode, progress=p),
          (("9-convergence.png", convergence.plot),), sections_gpt.convergence_section),
)
NOTE_FIGURES = {"repeated_products": instability.NOTE, "layernorm": layernorm_stats.NOTE,
                "attention": attention_scaling.NOTE, "ln_parameters": ln_params.NOTE,
                "parameter_counts": param_counts.NOTE, "timing": timing.NOTE,
                "convergence": convergence.NOTE}


def run_report(out="nanonorm-report", options: Options = Options(), *, studies=None,
               progress: bool | Callable[[str, str], None] = True) -> dict:
    """Run `studies` (default: STUDIES), write everything under `out`, return the
    results.json content. progress: a bar on stderr (True), none (False), or a callable that
    hears (study key, what it is doing) as each study goes."""
    from ..machine import environment

    studies = STUDIES if studies is None else studies
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {"options": dataclasses.asdict(options), "environment": environment(),
               "note_figures": NOTE_FIGURES, "studies": {}, "errors": {}, "seconds": {}}
    blocks = []
    # no ETA: the studies differ in length by a factor of a thousand
    bar = tqdm(studies, desc="nanonorm report", disable=progress is not True,
               bar_format="{desc}: study {n_fmt}/{total_fmt}, {elapsed} {postfix}")
    shown = [0.0]
    for study in bar:
        def tell(text: str, key=study.key) -> None:
            bar.set_postfix_str(f"{key}: {text}", refresh=False)
            if time.monotonic() - shown[0] > 0.5:     # redraw at most twice a second
                bar.refresh()
                shown[0] = time.monotonic()
            if callable(progress):
                progress(key, text)
        tell("starting")
        t0 = time.perf_counter()
        try:
            r = study.compute(options, tell)
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
    head = _header(results, options, studies)
    (out / "report.md").write_text(document.to_markdown(head + blocks), encoding="utf-8")
    (out / "report.html").write_text(document.to_html(head + blocks, "nanonorm report"),
                                     encoding="utf-8")
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1,
                                                 allow_nan=False, ensure_ascii=False),
                                      encoding="utf-8")
    return results


def _header(results: dict, o: Options, studies) -> list[tuple]:
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
    cited: dict[int, list[str]] = {}
    for s in studies:
        cited.setdefault(s.note, []).append(s.title.split(".")[0])
    return [("h", 1, "nanonorm report"),
            ("p", "The experiments of four course notes on LayerNorm, attention scaling, "
                  "GPT-2's parameters and its timing, rerun with nanonorm's own LayerNorm, "
                  "softmax and GPT-2. Each section cites its note and quotes the note's "
                  "figures beside what was measured here; every number is also in "
                  "`results.json`."),
            ("p", f"`{cmd}` took **{sec['total']:.1f} s** ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in sec.items() if k != "total") + ")"
                  + (f" on this machine; the full run (without `--quick`) trains and times "
                     f"larger models: {DURATION['full']} on a 2-core CPU." if o.quick else ".")
                  + (f" **Failed studies: {', '.join(failed)}.**" if failed else "")),
            *sources.sources_section(cited),
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
