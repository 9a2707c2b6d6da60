"""The bench's command line (`python -m bench`, `nanonorm bench`): its arguments are defined here,
apart from the grid, so that `nanonorm --help` does not load NumPy's BLAS, Numba or torch."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from nanonorm.cli import Parser, UsageError, int_at_least, reader_left


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run the cases whose name contains NAME (repeatable)")
    parser.add_argument("--repeats", type=int_at_least(1), default=None,
                        help="timed repeats per row (default: 7, 3 for the reference, 5 for "
                             "the model and AdamW, more for fast rows: about 0.5 s of calls)")
    parser.add_argument("--providers", nargs="+", choices=("reference", "numba", "torch", "cuda"),
                        help="default: all that can run here (torch when importable, cuda "
                             "with CuPy and a GPU, torch on the GPU beside it); also picks "
                             "the --study rows")
    parser.add_argument("--study", action="store_true",
                        help="also the source study's table: GPT-2 small construction, forward "
                             "at B=8, T=1024 (5 repeats), 5 training steps, per device; each "
                             "provider in a fresh process (glibc's default allocator), with its "
                             "peak memory")
    parser.add_argument("--scaling", action="store_true",
                        help="also how cost grows with work: causal attention fwd+bwd at "
                             "T=256..4096 and the GPT-2 small training step at B=1..8, "
                             "T=128..1024 (time, peak memory, log-log slopes; ~3 min on 2 "
                             "cores), plotted beside --plot as *_scaling.png")
    parser.add_argument("--dist", action="store_true",
                        help="also data parallelism here: the GPT-2 small training step on 1 "
                             "process x all cores against 2 processes (mpiexec) x their "
                             "share, with the time spent in the gradients' collectives")
    parser.add_argument("--json", type=Path, default=Path("bench_results.json"),
                        help="where the results go")
    parser.add_argument("--plot", type=Path, default=Path("bench_results.png"),
                        help="where the chart goes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc as it is (by default freed memory is kept "
                             "for reuse, for every provider: nanonorm.memory)")


def _check_writable(option: str, path: Path) -> None:
    """`path` can be written (tried with a scratch file beside it, the user's file untouched),
    so that a run of minutes does not end in a traceback."""
    if path.is_dir():
        raise UsageError(f"argument {option}: {str(path)!r} is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent if str(path.parent) else "."):
            pass
    except OSError as e:
        raise UsageError(f"argument {option}: cannot write {str(path)!r} ({e.strerror})") from None


def _check(args) -> None:
    from .cases import all_cases
    names = [c.name for c in all_cases()] + ["train_step_under_conditions"]
    for o in args.only or ():
        if not any(o in n for n in names):
            raise UsageError(f"argument --only: {o!r} matches no case (cases: {', '.join(names)})")
    _check_writable("--json", args.json)
    if args.plot:
        _check_writable("--plot", args.plot)
        if args.scaling:
            _check_writable("--plot", scaling_plot_path(args.plot))


def study_providers(providers) -> list[str] | None:
    """The study's rows for the grid's --providers (None: all that can run)."""
    rows = {"reference": ["reference"], "numba": ["numba", "numba-recompute"],
            "cuda": ["cupy"], "torch": ["torch-cpu", "torch-cuda"]}
    return None if not providers else [r for p in providers for r in rows[p]]


def scaling_plot_path(plot: Path) -> Path:
    return plot.with_name(plot.stem + "_scaling" + plot.suffix)


def _wants_conditions(args) -> bool:
    """The training step under the conditions of real use, unless --only leaves it out (it
    needs torch for its import-order rows)."""
    from .providers import torch_module
    return torch_module() is not None and (not args.only or any(
        o in "train_step_under_conditions" for o in args.only))


def run_from_args(args) -> int:
    from nanonorm.memory import keep_freed_memory
    _check(args)                       # before any work: the grid takes minutes
    # the same allocator policy for every provider of this process, torch included, as
    # `nanonorm train` uses (freed pages kept for reuse; see nanonorm.memory)
    kept = False if args.default_allocator else keep_freed_memory()
    from .core import plot, render_table, run_grid
    result = run_grid(quick=args.quick, only=args.only, repeats=args.repeats,
                      providers=args.providers, progress=not args.no_progress)
    result["keep_freed_memory"] = kept
    args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.plot:
        plot(result, args.plot)
    m, env = result["machine"], result["environment"]
    print(f"machine: fused triad {m['triad_GBps']:.1f} GB/s, sgemm {m['sgemm_GFLOPps']:.1f} "
          f"GFLOP/s; {env['cpu']} ({env['cpu_simd']}) x{env['cpu_count']}; NumPy BLAS "
          f"{env['blas']}; freed memory kept for reuse: {kept}")
    print(render_table(result), flush=True)
    if result["gpu"] != "present":
        print(f"GPU rows skipped: {result['gpu']}")
    if _wants_conditions(args):        # fresh processes: after the grid, before the study
        from . import conditions
        result["conditions"] = conditions.rows(quick=args.quick)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(conditions.render(result["conditions"]), flush=True)
    if args.scaling:
        from . import scaling
        result["scaling"] = scaling.rows(quick=args.quick)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        if args.plot:
            scaling.plot(result["scaling"], scaling_plot_path(args.plot))
        print(scaling.render(result["scaling"]), flush=True)
    if args.dist:
        from . import distributed
        result["distributed"] = distributed.rows(quick=args.quick)
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(distributed.render(result["distributed"], args.quick), flush=True)
    if args.study:                     # after the grid is printed and saved: it takes minutes
        from nanonorm.memory import release_freed_memory

        from .study import render_study, study_table
        release_freed_memory()         # the study's processes need all of it (torch: 19.3 GiB)
        result["study"] = study_table(quick=args.quick,
                                      providers=study_providers(args.providers))
        args.json.write_text(json.dumps(result, indent=2, default=str))
        print(render_study(result["study"], args.quick))
    bad = [r for r in result["rows"] if r["validated"] is False]
    for r in bad:
        print(f"VALIDATION FAILED: {r['case']} / {r['provider']}")
    failed = [r for r in result["study"] or [] if "error" in r]
    return 1 if bad or failed else 0


def main(argv=None) -> int:
    """`python -m bench`: the same options and one-line usage errors as `nanonorm bench`."""
    parser = Parser(prog="python -m bench", description="Time every implementation side by "
                    "side; write JSON and a chart")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except UsageError as e:
        parser.error(str(e))
    except BrokenPipeError:                 # python -m bench | head
        return reader_left()
