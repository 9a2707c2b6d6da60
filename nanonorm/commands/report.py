"""`nanonorm report`: rerun the source documents' studies and write the report."""
from __future__ import annotations

HELP = "Run every study of the source documents and write report.md, figures and results.json"


def configure(parser) -> None:
    parser.add_argument("--out", default="nanonorm-report", metavar="DIR",
                        help="output directory (default: nanonorm-report/)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny model for the timing study: finishes in well under a minute")
    parser.add_argument("--checkpoint", metavar="DIR", default=None,
                        help="GPT-2 checkpoint directory whose LayerNorm parameters to plot "
                             "(default: `nanonorm train`'s output directory if it holds a "
                             "model, else a freshly initialised model, labelled as such)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of every study")


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

    keep_freed_memory()          # the timing study trains GPT-2 small (see nanonorm.memory)

    checkpoint = args.checkpoint or _trained_checkpoint()
    if checkpoint and not args.checkpoint:
        print(f"study 6 uses the `nanonorm train` checkpoint found in {checkpoint}/")
    results = run_report(args.out, Options(quick=args.quick, seed=args.seed,
                                           checkpoint=checkpoint))
    print(f"wrote {args.out}/report.md, report.html, results.json and "
          f"{len(results['studies'])} studies' figures in {results['seconds']['total']:.1f} s")
    for key, error in results["errors"].items():
        print(f"study {key} failed: {error}")
    return 1 if results["errors"] else 0
