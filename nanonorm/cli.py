"""The `nanonorm` command: report, train, sample, params, bench, info.

Each subcommand lives in `nanonorm/commands/<name>.py` with `HELP`, `configure(parser)` and
`run(args) -> int`; heavy imports stay inside `run`, so `nanonorm --help` is instant.

Bad arguments are refused before any work, the way argparse refuses them: one line on stderr
naming the option, exit status 2, no traceback. A command raises `UsageError` for what only
shows after parsing (a missing file, a saved run that disagrees, an option that conflicts
with another); `main` reports it like argparse does.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import signal
import sys

COMMANDS = ("info", "report", "train", "sample", "params", "bench")


class UsageError(Exception):
    """Arguments that cannot work, found after parsing but before any work: reported as a
    usage error (exit status 2). The message names the option."""


def _default_text(action) -> str:
    if isinstance(action.default, bool):                # store_true / store_false
        return "on" if action.default else "off"
    return "none" if action.default is None else "%(default)s"


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it."""

    def _get_help_string(self, action):
        help = action.help or ""
        if (not action.option_strings or action.required or "default:" in help
                or action.default is argparse.SUPPRESS):
            return help                         # positionals, required, stated defaults, --help
        return f"{help} (default: {_default_text(action)})"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and float options that must be finite."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        if kwargs.get("type") is float:         # "nan" and "inf" parse as floats: refuse them
            kwargs["type"] = finite_float()
        action = super().add_argument(*args, **kwargs)
        if (action.option_strings and not action.help and not action.required
                and action.default is not argparse.SUPPRESS):
            action.help = f"default: {_default_text(action)}"    # argparse skips empty help
        return action

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def finite_float(low: float = -math.inf, *, above: bool = False, high: float = math.inf,
                 name: str = "a finite number"):
    """An argparse type: a finite float >= low (> low when `above`) and <= high."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if above else value >= low) and value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        return value
    convert.__name__ = name
    return convert


def int_at_least(low: int, name: str | None = None):
    """An argparse type: an int >= low."""
    name = name or f"an integer >= {low}"

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        return value
    convert.__name__ = name
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nanonorm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"nanonorm.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(run=module.run, parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)   # `train --nproc` reruns it
    try:
        return int(args.run(args) or 0)
    except UsageError as e:
        args.parser.error(str(e))
    except MemoryError as e:                # a preset or batch too large for this machine
        print(f"nanonorm {args.command}: error: out of memory ({e})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                 # the reader left (`nanonorm info | head`)
        return reader_left()


def reader_left() -> int:
    """The exit status after stdout's reader closed the pipe, as a shell reports a SIGPIPE;
    stdout goes to /dev/null so the interpreter's own flush at exit does not fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
