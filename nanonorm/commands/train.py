"""`nanonorm train`: a byte-level GPT on an offline corpus, with checkpoints that resume exactly.

Every --checkpoint-every steps, at the end, and when SIGINT (Ctrl-C) or SIGTERM arrives, OUT/
becomes one checkpoint (nanonorm.checkpoint.save, replaced as a unit): model.safetensors +
config.json, loadable with GPT.from_pretrained and `nanonorm sample`, and
train_state.safetensors: the AdamW moments and step counts, the batch RNG's state, the step and
the run's settings. A run killed at any moment resumes from its last checkpoint and draws the
same batches with the same weights and moments: bit-identical to a run never interrupted.

Everything is checked before the first step (usage errors, exit status 2; see train_setup).
A loss or gradient norm that is not finite stops the run (exit status 1) without saving over
the last checkpoint. This module holds the options and the loop; train_state writes what a
checkpoint holds beside the model.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..cli import UsageError
from .train_setup import SETTINGS, Run, prepare
from .train_state import STATE_FORMAT, save_state

__all__ = ["HELP", "SETTINGS", "STATE_FORMAT", "Run", "Stopped", "configure", "evaluate",
           "prepare", "run", "save_state", "train"]

HELP = ("Train a byte-level GPT (stdlib sources or --data FILE); --resume continues a run "
        "bit-identically")


class _Given(argparse.Action):
    """Store the value and record that the option was given (--resume compares only those)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = getattr(namespace, "given", frozenset()) | {self.dest}


def configure(parser) -> None:
    from ..cli import finite_float, int_at_least
    from ..gpt_config import PRESETS

    def setting(flag, **kw):
        parser.add_argument(flag, action=_Given, **kw)

    setting("--preset", default="mini", choices=list(PRESETS), metavar="PRESET",
            help=f"model preset: {', '.join(PRESETS)} (tiny and mini are byte-level, vocab 256;"
                 f" default: mini)")
    setting("--steps", type=int_at_least(1), default=200,
            help="optimizer steps; also the length of the LR schedule (warmup, then a cosine "
                 "down to --min-lr), fixed when the run starts (default: 200). With --resume: "
                 "the step to stop at (default: the saved run's); past the schedule's end only "
                 "with --extend")
    setting("--batch-size", type=int_at_least(1), default=8,
            help="sequences per micro-batch on each process; a step's global batch is "
                 "batch-size x grad-accum x processes (default: 8)")
    setting("--grad-accum", type=int_at_least(1), default=1, metavar="K",
            help="micro-batches whose gradients add up to one optimizer step (default: 1)")
    setting("--block-size", type=int_at_least(1), default=None,
            help="context length (default: the preset's block_size)")
    setting("--lr", type=finite_float(0.0, above=True, name="a finite number > 0"),
            default=1e-3, help="peak learning rate")
    setting("--min-lr", type=finite_float(0.0, name="a finite number >= 0"), default=None,
            help="final learning rate, at most --lr (default: lr/10)")
    setting("--warmup", type=int_at_least(0), default=None,
            help="linear warmup steps, at most --steps (default: steps/10, at most 100)")
    setting("--weight-decay", type=finite_float(0.0, name="a finite number >= 0"), default=0.1,
            help="AdamW's decoupled weight decay of the 2-D weights")
    setting("--grad-clip", type=finite_float(0.0, above=True, name="a finite number > 0"),
            default=1.0, help="clip the gradients' global L2 norm to this")
    setting("--seed", type=int_at_least(0), default=0, help="initialisation and batch seed")
    setting("--data", default=None, metavar="FILE",
            help="a text file (default: the Python stdlib's own source, offline)")
    setting("--dtype", default="float32", choices=("float32", "float64"),
            help="parameters and activations")
    setting("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: CuPy arrays")
    parser.add_argument("--out", default="out", metavar="DIR", help="checkpoint directory")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run saved in OUT, with its settings")
    existing.add_argument("--overwrite", action="store_true",
                          help="start a new run even though OUT holds a checkpoint (replaced "
                               "at this run's first checkpoint)")
    parser.add_argument("--extend", action="store_true",
                        help="with --resume: allow --steps past the schedule's end; the extra "
                             "steps run at --min-lr")
    parser.add_argument("--checkpoint-every", type=int_at_least(1), default=100, metavar="N",
                        help="save OUT every N steps (also after the last step and on SIGINT "
                             "or SIGTERM)")
    parser.add_argument("--log-every", type=int_at_least(1), default=10, metavar="N",
                        help="print the loss every N steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--nproc", type=int_at_least(1), default=1, metavar="N",
                        help="data-parallel processes, started through MPI's mpiexec (pip "
                             "install \"nanonorm[dist]\"); `mpiexec -n N nanonorm train ...` "
                             "is the same run (default: 1)")
    parser.add_argument("--zero", type=int, choices=(0, 1), default=0,
                        help="1: split AdamW's moments across the processes (ZeRO stage 1; "
                             "CPU); the same run as 0, with 1/N of the optimizer's memory "
                             "per process (default: 0)")
    parser.add_argument("--overlap-comm", action="store_true",
                        help="with --nproc: start each gradient bucket's reduce-scatter during "
                             "the backward instead of after it; pays where the MPI library "
                             "progresses it in the background (measured on 2 cores with "
                             "MPICH: 1.0-1.1x slower, so off by default)")
    parser.add_argument("--recompute", action="store_true",
                        help="keep only each block's input and recompute its activations in "
                             "the backward: about a third more compute, a fraction of the "
                             "memory, the same gradients bit for bit (may differ on --resume)")
    parser.add_argument("--matmul-precision", choices=("highest", "high", "medium"),
                        default=None, help="float32 matmul operands: highest = float32, high = "
                        "TF32, medium = bfloat16; float32 weights, activations and reductions "
                        "either way (see nanonorm.precision; default: highest, or "
                        "NANONORM_MATMUL_PRECISION)")
    parser.set_defaults(given=frozenset())


class Stopped(Exception):
    """Training stopped before its last step: `status` is the exit status, the message says
    why and where the last checkpoint is."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def run(args) -> int:
    from .. import distributed as dist
    from ..memory import keep_freed_memory
    from .train_launch import launch, start_rank
    if args.nproc > 1 and dist.launched_size() == 1:
        return launch(args)          # mpiexec runs this command on N processes
    keep_freed_memory()          # this process trains: reuse freed pages (see nanonorm.memory)
    group = start_rank(args)
    try:
        train(args)
    except Stopped as e:            # every rank stops at the same step; rank 0 says why
        if group.rank == 0:
            print(f"nanonorm train: {e}", file=sys.stderr)
        return e.status
    except UsageError:              # before the first step, agreed by every rank
        raise
    except BaseException:
        if group.size > 1:          # the others would wait for this rank forever
            import traceback
            traceback.print_exc()
            group.abort(1)
        raise
    return 0


def train(args, *, on_step=None) -> list[float]:
    """Run (or resume) training; returns the losses of the steps run now. Raises UsageError
    before the first step for anything that cannot work, Stopped on a signal or divergence.
    `on_step(step)`, if given, is called after each completed step (tests simulate crashes)."""
    import numpy as np

    from .. import precision
    from ..distributed import world
    from .train_launch import agreed
    group = world()
    args.world_size = group.size
    if args.nproc > 1 and args.nproc != group.size:
        raise UsageError(f"argument --nproc: {args.nproc}, but MPI started {group.size} "
                         f"process(es)")
    r = agreed(group, lambda: prepare(args))
    r.model.recompute = args.recompute
    if args.zero:
        r.opt = agreed(group, lambda: zero_optimizer(r, args, group))
    model, s, out = r.model, r.settings, r.out
    print(f"{model!r}\ncorpus: {len(r.train_data):,} train / {len(r.val_data):,} val bytes"
          f"{' from ' + s['data'] if s['data'] else ' (Python stdlib sources)'}; "
          f"steps {r.start}..{r.stop}", flush=True)
    if r.start >= r.stop:
        print(f"{out}/ is already at step {r.start} of {r.stop}; nothing to do")
        return []
    mode = args.matmul_precision or precision.get_float32_matmul_precision()
    with precision.float32_matmul_precision(mode):
        losses = _loop(r, args, on_step, group)
        if group.rank == 0:
            print(f"val loss {evaluate(model, r.val_data, s):.4f} (log(256) = "
                  f"{np.log(256):.4f}); checkpoint in {out}/")
    return losses


def zero_optimizer(r: Run, args, group):
    """The run's AdamW, sharded across the ranks, with its saved state when resuming."""
    from ..distributed_zero import shard_optimizer
    if r.settings["device"] != "cpu":
        raise UsageError("argument --zero: ZeRO-1 runs on the CPU only (--device cpu)")
    state = r.opt.state_dict() if r.start else None
    sharded = shard_optimizer(r.opt, group)
    if state is not None:
        sharded.load_state_dict(state)
    return sharded


def _loop(r: Run, args, on_step, group) -> list[float]:
    import numpy as np
    from tqdm import tqdm

    from ..optim import cosine_lr
    from .train_launch import reducer_for, step_gradients, update

    model, opt, s, out = r.model, r.opt, r.settings, r.out
    reducer = reducer_for(model, group, bool(args.zero)) if args.overlap_comm else None
    losses, pending = [], []        # pending: (step, loss, grad norm) not yet read back
    saved = r.start if r.start else None
    bar = tqdm(range(r.start, r.stop), initial=r.start, total=r.stop,
               disable=args.no_progress, unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    # non-finite values are reported by _finite, with the step: NumPy's warnings would repeat it
    with _Signals(quiet=group.rank != 0) as signals, bar, np.errstate(over="ignore", invalid="ignore",
                                                 divide="ignore"):
        for step in bar:
            x, y = _batch(r.train_data, s, r.rng)            # the step's global batch
            opt.lr = cosine_lr(step, max_lr=s["lr"], warmup=s["warmup"], total=s["steps"],
                               min_lr=s["min_lr"])
            loss, grads = step_gradients(model, x, y, s, group, reducer)
            norm = update(opt, grads, s["grad_clip"], group, reducer)
            done = step + 1
            pending.append((done, loss, norm))
            tokens += x.size
            # read once (a signal that comes later waits a step), rank 0's for every rank
            stopping = group.broadcast_object(signals.received)
            log = done % args.log_every == 0 or done == r.stop
            save = done % args.checkpoint_every == 0 or done == r.stop or stopping
            if log or save:         # read back once per log or save, never saving a NaN
                losses += _finite(pending, out, saved)
                pending.clear()
            if log:
                rate = tokens / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", tok_s=f"{rate:,.0f}")
                bar.write(f"step {done:6d}/{r.stop}  loss {losses[-1]:.4f}  lr {opt.lr:.2e}  "
                          f"grad norm {float(norm):.3f}  {rate:,.0f} tok/s")
                t0, tokens = time.perf_counter(), 0
            if save:
                state = opt.state_dict()            # a sharded optimizer gathers it
                if group.rank == 0:
                    save_state(out, model, opt, r.rng, done, r.stop, s, r.numerics, state)
                group.barrier()
                saved = done
                t0 = time.perf_counter()         # tokens/s counts training time only
            if stopping:
                raise Stopped(f"{signal.Signals(stopping).name} received: stopped after step "
                              f"{done} of {r.stop}; its checkpoint is in {out}/ (continue "
                              f"with: nanonorm train --out {out} --resume)", 128 + stopping)
            if on_step is not None:
                on_step(step)
    return losses


def _finite(pending, out: Path, saved) -> list[float]:
    """The pending losses as floats; Stopped at the first non-finite loss or gradient norm."""
    read = [(step, float(loss), float(norm)) for step, loss, norm in pending]
    for step, loss, norm in read:
        if not (math.isfinite(loss) and math.isfinite(norm)):
            kept = (f"{out}/ keeps the checkpoint of step {saved}" if saved is not None
                    else f"nothing was saved ({out}/ is as it was)")
            raise Stopped(f"training diverged at step {step}: loss {loss}, gradient norm "
                          f"{norm} (try a lower --lr); {kept}", 1)
    return [loss for _, loss, _ in read]


class _Signals:
    """SIGINT and SIGTERM during training: the first lets the current step finish, after which
    the loop saves a checkpoint and stops; a second one stops at once (KeyboardInterrupt),
    leaving the last checkpoint as it was (a save is atomic)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet                  # another rank: rank 0 tells the user

    def __enter__(self):
        self.received, self._old = None, {}
        if threading.current_thread() is threading.main_thread():   # where signals arrive
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        if self.quiet:
            return
        # os.write, not print: a handler that prints while the loop prints raises
        os.write(2, f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
                    f"(send it again to stop at once, without saving)\n".encode())

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _batch(data, s, rng):
    """A step's global batch: every rank draws it whole (the same RNG), then takes its part,
    so the sequences of a step do not depend on the split."""
    from ..data import get_batch
    from .train_setup import global_batch
    return get_batch(data, global_batch(s), s["block_size"], rng)


def evaluate(model, data, s, batches: int = 8) -> float:
    """Mean loss on `batches` held-out batches drawn with their own fixed seed."""
    import numpy as np
    from .. import functional as F
    rng = np.random.default_rng(12345)
    total = None
    for _ in range(batches):
        x, y = _batch(data, s, rng)
        logits, _ = model.forward(x)        # no targets: no activations kept for a backward
        loss, _ = F.cross_entropy_forward(logits, model.token_ids("targets", y))
        total = loss if total is None else total + loss
    return float(total) / batches
