"""`nanonorm train`: a byte-level GPT on an offline corpus, with checkpoints that resume exactly.

Every --checkpoint-every steps, at the end, and when SIGINT (Ctrl-C) or SIGTERM arrives, OUT/
becomes one checkpoint (nanonorm.checkpoint.save, replaced as a unit): model.safetensors +
config.json, loadable with GPT.from_pretrained and `nanonorm sample`, and
train_state.safetensors: the AdamW moments and step counts, the batch RNG's state, the step and
the run's settings. A run killed at any moment resumes from its last checkpoint and draws the
same batches with the same weights and moments: bit-identical to a run never interrupted.

Everything is checked before the first step (usage errors, exit status 2): every option, the
corpus (both splits must hold a block), OUT (writable; an existing run in it is continued only
with --resume, replaced only with --overwrite), and on --resume the saved run against the
options given. A loss or gradient norm that is not finite stops the run (exit status 1)
without saving over the last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..cli import UsageError

HELP = ("Train a byte-level GPT (stdlib sources or --data FILE); --resume continues a run "
        "bit-identically")
STATE_FORMAT = "nanonorm-train/2"
# fixed when a run starts; on --resume an option given explicitly must agree with the saved one
SETTINGS = ("preset", "steps", "batch_size", "block_size", "lr", "min_lr", "warmup",
            "weight_decay", "grad_clip", "seed", "dtype", "device")


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
    setting("--batch-size", type=int_at_least(1), default=8, help="sequences per step")
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
    parser.set_defaults(given=frozenset())


class Stopped(Exception):
    """Training stopped before its last step: `status` is the exit status, the message says
    why and where the last checkpoint is."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def run(args) -> int:
    from ..memory import keep_freed_memory
    keep_freed_memory()          # this process trains: reuse freed pages (see nanonorm.memory)
    try:
        train(args)
    except Stopped as e:
        print(f"nanonorm train: {e}", file=sys.stderr)
        return e.status
    return 0


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
    numerics: dict          # what the numbers depend on besides the state (see _numerics)


def train(args, *, on_step=None) -> list[float]:
    """Run (or resume) training; returns the losses of the steps run now. Raises UsageError
    before the first step for anything that cannot work, Stopped on a signal or divergence.
    `on_step(step)`, if given, is called after each completed step (tests simulate crashes)."""
    import numpy as np

    r = prepare(args)
    model, s, out = r.model, r.settings, r.out
    print(f"{model!r}\ncorpus: {len(r.train_data):,} train / {len(r.val_data):,} val bytes"
          f"{' from ' + s['data'] if s['data'] else ' (Python stdlib sources)'}; "
          f"steps {r.start}..{r.stop}", flush=True)
    if r.start >= r.stop:
        print(f"{out}/ is already at step {r.start} of {r.stop}; nothing to do")
        return []
    losses = _loop(r, args, on_step)
    print(f"val loss {evaluate(model, r.val_data, s):.4f} (log(256) = {np.log(256):.4f}); "
          f"checkpoint in {out}/")
    return losses


def _loop(r: Run, args, on_step) -> list[float]:
    import numpy as np
    from tqdm import tqdm

    from ..optim import clip_grad_norm, cosine_lr

    model, opt, s, out = r.model, r.opt, r.settings, r.out
    losses, pending = [], []        # pending: (step, loss, grad norm) not yet read back
    saved = r.start if r.start else None
    bar = tqdm(range(r.start, r.stop), initial=r.start, total=r.stop,
               disable=args.no_progress, unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    # non-finite values are reported by _finite, with the step: NumPy's warnings would repeat it
    with _Signals() as signals, bar, np.errstate(over="ignore", invalid="ignore",
                                                 divide="ignore"):
        for step in bar:
            x, y = _batch(r.train_data, s, r.rng)
            opt.lr = cosine_lr(step, max_lr=s["lr"], warmup=s["warmup"], total=s["steps"],
                               min_lr=s["min_lr"])
            _, loss = model.forward(x, y)
            grads = model.backward()
            norm = clip_grad_norm(grads, s["grad_clip"])
            opt.step(grads)
            done = step + 1
            pending.append((done, loss, norm))
            tokens += x.size
            stopping = signals.received     # read once: one that comes later waits a step
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
                save_state(out, model, opt, r.rng, done, r.stop, s, r.numerics)
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
        # os.write, not print: a handler that prints while the loop prints raises
        os.write(2, f"\n{signal.Signals(signum).name}: saving a checkpoint after this step "
                    f"(send it again to stop at once, without saving)\n".encode())

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _batch(data, s, rng):
    from ..data import get_batch
    return get_batch(data, s["batch_size"], s["block_size"], rng)


def evaluate(model, data, s, batches: int = 8) -> float:
    """Mean loss on `batches` held-out batches drawn with their own fixed seed."""
    import numpy as np
    rng = np.random.default_rng(12345)
    total = None
    for _ in range(batches):
        _, loss = model.forward(*_batch(data, s, rng))
        total = loss if total is None else total + loss
    model._cache = None                     # evaluation needs no backward
    return float(total) / batches


# checks before the first step --------------------------------------------------------------

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
               val_data, out, _numerics(model))


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
    numerics = _numerics(model)
    saved = json.loads(meta.get("numerics", "{}"))
    changed = [k for k in numerics if saved.get(k) != numerics[k]]
    if changed:
        print(f"nanonorm train: warning: {', '.join(changed)} changed since step {step} was "
              f"saved{' (or were not recorded)' if not saved else ''}: the run continues "
              f"from its saved state, but not bit-identically to an uninterrupted run",
              file=sys.stderr, flush=True)
    return Run(model, opt, rng, step, stop, s, train_data, val_data, out, numerics)


def _check_agreement(args, s: dict) -> None:
    """UsageError for settings given explicitly that differ from the saved run's."""
    clash = [f"--{k.replace('_', '-')} {getattr(args, k)} (the run has {s[k]})"
             for k in SETTINGS if k != "steps" and k in args.given and getattr(args, k) != s[k]]
    if clash:
        raise UsageError(f"argument --resume: {'; '.join(clash)}: a resumed run keeps the "
                         f"settings it started with (start a new run in another --out, or "
                         f"replace this one with --overwrite)")


def _numerics(model) -> dict:
    """Besides the saved state, what decides the bits of every step: the source of the ops,
    kernels, model and optimizer, which implementation each op runs, the libraries that
    compute, and the CPU (Numba compiles for it; reduction order follows its vector width).
    The thread count is not here: results do not depend on it."""
    import hashlib
    import importlib
    import platform

    import numpy as np

    from .. import dispatch

    kernels = "nanonorm.kernels.cuda" if model.device == "cuda" else "nanonorm.kernels.cpu"
    sources = hashlib.sha256()
    for name in ("nanonorm.backend", "nanonorm.functional", "nanonorm.gpt", "nanonorm.gpt_config",
                 "nanonorm.optim", "nanonorm.data", "nanonorm.ops", kernels):
        try:
            module = importlib.import_module(name)
        except Exception:       # an implementation that cannot load: the table below says so
            continue
        files = (sorted(Path(module.__path__[0]).glob("*.py")) if hasattr(module, "__path__")
                 else [Path(module.__file__)])
        for file in files:
            sources.update(file.name.encode() + b"\0" + file.read_bytes())
    probe = model.xp.empty(0, dtype=model._xp_dtype)
    versions = {"numpy": np.__version__}
    for dist in ("numba", "llvmlite") + (("cupy",) if model.device == "cuda" else ()):
        try:
            versions[dist] = importlib.import_module(dist).__version__
        except ImportError:
            pass
    try:
        import llvmlite.binding as llvm
        cpu = llvm.get_host_cpu_name()
    except ImportError:
        cpu = platform.processor()
    return {"source": sources.hexdigest()[:16],
            "implementations": {op: dispatch.implementation_for(op, probe)
                                for op in sorted(dispatch.kernels("reference"))},
            "libraries": versions, "cpu": f"{platform.machine()} {cpu}"}


def save_state(out: Path, model, opt, rng, step: int, stop: int, settings: dict,
               numerics: dict | None = None) -> None:
    """One checkpoint unit: weights + config, and the training state beside them."""
    import numpy as np

    from ..backend import to_numpy
    from ..checkpoint import save

    state = opt.state_dict()
    tensors = {f"{prefix}/{n}": np.ascontiguousarray(to_numpy(a))
               for prefix in ("m", "v") for n, a in state[prefix].items()}
    optim = {k: v for k, v in state.items() if k not in ("m", "v")}
    meta = {"format": STATE_FORMAT, "step": str(step), "stop": str(stop),
            "rng": json.dumps(rng.bit_generator.state), "optim": json.dumps(optim),
            "settings": json.dumps(settings), "numerics": json.dumps(numerics or {})}
    save(model, out, train_state=(tensors, meta))
