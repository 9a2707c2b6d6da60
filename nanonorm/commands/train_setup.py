"""`nanonorm train`'s checks before the first step, and the run they prepare: a fresh one from
the options, or the run saved in OUT resumed with its own settings.

Everything that cannot work is a UsageError naming the option: OUT (writable; an existing run
in it is continued only with --resume, replaced only with --overwrite), the corpus (both splits
must hold a block), the schedule, and on --resume the saved run against the options given.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..cli import UsageError
from .train_state import numerics_of

__all__ = ["SETTINGS", "Run", "prepare"]

# fixed when a run starts; on --resume an option given explicitly must agree with the saved one
# (batch_size and grad_accum may change with the number of ranks: the global batch is fixed)
SETTINGS = ("preset", "steps", "batch_size", "grad_accum", "block_size", "lr", "min_lr",
            "warmup", "weight_decay", "grad_clip", "seed", "dtype", "device")
SPLIT = ("batch_size", "grad_accum")


def global_batch(s: dict) -> int:
    """Sequences per optimizer step: per-rank micro-batch × micro-batches × ranks."""
    return s["batch_size"] * s["grad_accum"] * s["nproc"]


@dataclass
class Run:
    model: object
    opt: object
    rng: object             # numpy Generator of the training batches
    start: int              # steps done
    stop: int               # the step to stop at
    settings: dict
    train_data: object
    val_data: object
    out: Path
    numerics: dict          # what the numbers depend on besides the state (numerics_of)


def prepare(args) -> Run:
    """The model, optimizer, batch RNG and corpus of a fresh or resumed run, everything
    checked; UsageError naming the option for anything that cannot work."""
    from ..checkpoint import check_writable, is_checkpoint

    out = Path(args.out)
    try:
        check_writable(out)
    except (TypeError, ValueError) as e:
        raise UsageError(f"argument --out: {e}") from None
    _probe_writable(out)
    if args.extend and not args.resume:
        raise UsageError("argument --extend: only with --resume (a new run's schedule is "
                         "--steps long)")
    if args.resume:
        if not is_checkpoint(out):
            raise UsageError(f"argument --resume: {out}/ holds no checkpoint to resume "
                             f"(start the run without --resume)")
        return _resumed(out, args)
    if is_checkpoint(out) and not args.overwrite:
        raise UsageError(f"argument --out: {out}/ already holds a checkpoint; pass --resume "
                         f"to continue its run or --overwrite to replace it with a new one")
    return _fresh(out, args)


def _probe_writable(out: Path) -> None:
    """Create and remove a directory where the first save will stage its files: permission
    bits do not tell (root passes every access check; /proc refuses everyone)."""
    import tempfile

    place = out.resolve().parent
    while not place.exists():
        place = place.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nanonorm-probe-", dir=place))
    except OSError as e:
        raise UsageError(f"argument --out: cannot create a checkpoint in {str(place)!r} "
                         f"({e.strerror or e})") from None


def _fresh(out: Path, args) -> Run:
    import numpy as np

    from ..gpt_config import GPTConfig

    block = args.block_size or GPTConfig.preset(args.preset).block_size
    s = {k: getattr(args, k) for k in SETTINGS}
    s["nproc"] = args.world_size
    s.update(block_size=block, min_lr=args.lr / 10 if args.min_lr is None else args.min_lr,
             warmup=min(100, args.steps // 10) if args.warmup is None else args.warmup)
    if s["min_lr"] > s["lr"]:
        raise UsageError(f"argument --min-lr: {s['min_lr']} exceeds --lr {s['lr']}")
    if s["warmup"] > s["steps"]:
        raise UsageError(f"argument --warmup: {s['warmup']} exceeds --steps {s['steps']}")
    try:
        config = GPTConfig.preset(args.preset, block_size=block)
    except ValueError as e:
        raise UsageError(f"argument --block-size: {e}") from None
    data = None if args.data is None else str(Path(args.data).resolve())
    train_data, val_data, s["corpus"] = _corpus(data, block)
    s["data"] = data
    model = _model(lambda GPT: GPT(config, seed=args.seed, dtype=args.dtype,
                                   device=args.device))
    opt = model.configure_optimizer(lr=s["lr"], weight_decay=s["weight_decay"])
    return Run(model, opt, np.random.default_rng(args.seed), 0, args.steps, s, train_data,
               val_data, out, numerics_of(model))


def _corpus(path, block: int):
    """(train split, validation split, fingerprint); each split must hold one block + 1."""
    from ..data import fingerprint, load_corpus, split

    option = "--data" if path else "--data (not given: the stdlib corpus)"
    try:
        data = load_corpus(path)
    except OSError as e:
        raise UsageError(f"argument {option}: {e}") from None
    train_data, val_data = split(data)
    need = block + 1
    if min(len(train_data), len(val_data)) < need:
        raise UsageError(f"argument {option}: the corpus has {len(data):,} bytes; its training "
                         f"split ({len(train_data):,}) and validation split (the last 10%, "
                         f"{len(val_data):,}) must each hold block_size + 1 = {need:,} bytes: "
                         f"give a larger file or a smaller --block-size")
    return train_data, val_data, fingerprint(data)


def _model(build):
    from ..gpt import GPT
    try:
        return build(GPT)
    except RuntimeError as e:               # device="cuda" without CuPy or a GPU
        raise UsageError(f"argument --device: {e}") from None


def _resumed(out: Path, args) -> Run:
    import numpy as np

    from ..checkpoint import load, read_train_state
    from ..gpt_config import GPTConfig

    where = f"argument --resume: {out}/"
    try:
        tensors, meta = read_train_state(out)
        s, rng_state = json.loads(meta["settings"]), json.loads(meta["rng"])
        optim, step = json.loads(meta["optim"]), int(meta["step"])
        if step < 0:
            raise ValueError(f"step {step} < 0")
    except FileNotFoundError:
        raise UsageError(f"{where} holds a model but no training state to resume") from None
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{where}: its training state cannot be read ({e})") from None
    s.setdefault("grad_accum", 1)           # written before data parallelism
    s.setdefault("nproc", 1)
    _resplit(args, s, where)
    if "steps" not in s:                    # written before the schedule's length was saved
        if "steps" not in args.given:
            raise UsageError(f"{where}'s training state does not record its schedule's length:"
                             f" give the run's --steps")
        s["steps"] = args.steps
    stop = int(meta.get("stop", s["steps"]))
    _check_agreement(args, s)
    if "steps" in args.given:
        stop = args.steps
        if stop > s["steps"] and not args.extend:
            raise UsageError(f"argument --steps: {stop} is past the end of this run's LR "
                             f"schedule (step {s['steps']}, fixed when it started); pass "
                             f"--extend to run the extra steps at --min-lr {s['min_lr']:g}")
    if args.data is not None:
        s["data"] = str(Path(args.data).resolve())     # the same corpus, maybe moved
    train_data, val_data, corpus = _corpus(s["data"], s["block_size"])
    if corpus != s["corpus"]:
        raise UsageError(f"argument --data: the corpus ({s['data'] or 'stdlib'}) differs from "
                         f"the one this run started with")
    try:
        model = _model(lambda GPT: load(out, dtype=s["dtype"], device=s["device"]))
    except (OSError, ValueError) as e:
        raise UsageError(f"{where}: its model cannot be read ({e})") from None
    if model.config != GPTConfig.preset(s["preset"], block_size=s["block_size"]):
        raise UsageError(f"{where}'s model ({model.config}) is not the saved run's "
                         f"(preset {s['preset']}, block_size {s['block_size']})")
    opt = model.configure_optimizer(lr=s["lr"], weight_decay=s["weight_decay"])
    take = lambda prefix: {k.split("/", 1)[1]: v for k, v in tensors.items()
                           if k.startswith(prefix + "/")}
    rng = np.random.default_rng()
    try:
        opt.load_state_dict({**optim, "m": take("m"), "v": take("v")})
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError) as e:
        raise UsageError(f"{where}: its training state does not fit its model ({e})") from None
    kept = ", ".join(f"{k} {s[k]}" for k in SETTINGS if k != "steps")
    print(f"resuming {out}/ at step {step}, stopping at {stop} (LR schedule of {s['steps']} "
          f"steps); the run keeps its settings: {kept}", flush=True)
    numerics = numerics_of(model)
    saved = json.loads(meta.get("numerics", "{}"))
    changed = [k for k in numerics if saved.get(k) != numerics[k]]
    if changed:
        print(f"nanonorm train: warning: {', '.join(changed)} changed since step {step} was "
              f"saved{' (or were not recorded)' if not saved else ''}: the run continues "
              f"from its saved state, but not bit-identically to an uninterrupted run",
              file=sys.stderr, flush=True)
    return Run(model, opt, rng, step, stop, s, train_data, val_data, out, numerics)


def _resplit(args, s: dict, where: str) -> None:
    """The run's global batch split anew for this launch: --batch-size and --grad-accum as
    given (else as saved) on this many ranks must make the same global batch."""
    split = {k: getattr(args, k) if k in args.given else s[k] for k in SPLIT}
    new = dict(s, **split, nproc=args.world_size)
    if global_batch(new) != global_batch(s):
        raise UsageError(f"{where}'s global batch is {global_batch(s)} sequences (batch size "
                         f"{s['batch_size']} x grad-accum {s['grad_accum']} x {s['nproc']} "
                         f"process(es)); batch size {new['batch_size']} x grad-accum "
                         f"{new['grad_accum']} x {new['nproc']} process(es) makes "
                         f"{global_batch(new)}: give --batch-size and --grad-accum that keep it")
    s.update(split, nproc=args.world_size)


def _check_agreement(args, s: dict) -> None:
    """UsageError for settings given explicitly that differ from the saved run's."""
    clash = [f"--{k.replace('_', '-')} {getattr(args, k)} (the run has {s[k]})"
             for k in SETTINGS if k != "steps" and k not in SPLIT and k in args.given
             and getattr(args, k) != s[k]]
    if clash:
        raise UsageError(f"argument --resume: {'; '.join(clash)}: a resumed run keeps the "
                         f"settings it started with (start a new run in another --out, or "
                         f"replace this one with --overwrite)")
