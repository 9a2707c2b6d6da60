"""`nanonorm report`: rerun the source notes' studies and write the report."""
from __future__ import annotations

from ..studies import DURATION

HELP = "Run every study of the source notes and write report.md, figures and results.json"


def configure(parser) -> None:
    parser.add_argument("--out", default="nanonorm-report", metavar="DIR",
                        help="output directory (default: nanonorm-report)")
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes everywhere: {DURATION['quick']} on a 2-core CPU, "
                             f"where the full run takes {DURATION['full']} (default: off, the "
                             "full run)")
    parser.add_argument("--checkpoint", metavar="DIR", default=None,
                        help="GPT-2 checkpoint directory whose LayerNorm parameters study 6 "
                             "plots (default: `nanonorm train`'s output directory if it holds "
                             "a model, else the pretrained GPT-2 if a local Hugging Face cache "
                             "holds it, else a small model trained for the study)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of every study (default: 0)")


def _trained_checkpoint() -> str | None:
    """`nanonorm train`'s default output directory, when it holds a model."""
    import argparse
    from pathlib import Path

    from . import train

    parser = argparse.ArgumentParser()
    train.configure(parser)
    out = parser.get_default("out")
    return out if (Path(out) / "model.safetensors").is_file() else None


def run(args) -> int:
    from ..memory import keep_freed_memory
    from ..studies.report import Options, run_report

    keep_freed_memory()          # the timing study trains Model 5 (see nanonorm.memory)

    checkpoint = args.checkpoint or _trained_checkpoint()
    if checkpoint and not args.checkpoint:
        print(f"study 6 uses the `nanonorm train` checkpoint found in {checkpoint}/")
    mode = "quick" if args.quick else "full"
    print(f"nanonorm report{' --quick' if args.quick else ''}: 9 studies, {DURATION[mode]} on "
          "a 2-core CPU; the bar says what each long study is doing", flush=True)
    results = run_report(args.out, Options(quick=args.quick, seed=args.seed,
                                           checkpoint=checkpoint))
    print(f"wrote {args.out}/report.md, report.html, results.json and "
          f"{len(results['studies'])} studies' figures in {results['seconds']['total']:.1f} s")
    for key, error in results["errors"].items():
        print(f"study {key} failed: {error}")
    return 1 if results["errors"] else 0
