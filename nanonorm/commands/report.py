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
                             "(default: a freshly initialised model, labelled as such)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of every study")


def run(args) -> int:
    from ..studies.report import Options, run_report

    results = run_report(args.out, Options(quick=args.quick, seed=args.seed,
                                           checkpoint=args.checkpoint))
    print(f"wrote {args.out}/report.md, report.html, results.json and "
          f"{len(results['studies'])} studies' figures in {results['seconds']['total']:.1f} s")
    for key, error in results["errors"].items():
        print(f"study {key} failed: {error}")
    return 1 if results["errors"] else 0
