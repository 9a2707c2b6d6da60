"""`nanonorm bench`: the microbenchmark grid (same as `python -m bench`)."""
from __future__ import annotations

HELP = "Time reference, Numba and torch kernels and the GPT-2 step; write JSON and a chart"


def configure(parser) -> None:
    from ..bench.cli import add_arguments
    add_arguments(parser)


def run(args) -> int:
    from ..bench.cli import run_from_args
    return run_from_args(args)
