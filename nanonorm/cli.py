"""The `nanonorm` command: report, train, sample, params, bench, info.

Each subcommand lives in `nanonorm/commands/<name>.py` with `HELP`, `configure(parser)` and
`run(args) -> int`; heavy imports stay inside `run`, so `nanonorm --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("info", "report", "train", "sample", "params", "bench")  # each subcommand adds its name here when its module lands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanonorm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"nanonorm.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
