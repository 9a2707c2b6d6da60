"""`nanonorm train`: a byte-level GPT on an offline corpus, with checkpoints that resume exactly.

Every --checkpoint-every steps OUT/ gets model.safetensors + config.json (loadable with
GPT.from_pretrained and `nanonorm sample`) and train_state.safetensors: weights, AdamW moments,
step, the batch RNG's state and the run's settings in one atomically written file, so a
resumed run draws the same batches and reproduces the uninterrupted run's losses.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "Train a byte-level GPT (stdlib sources or --data FILE); --resume continues exactly"
STATE_NAME = "train_state.safetensors"
# settings fixed at the start of a run and restored on --resume (--steps may be extended)
SETTINGS = ("preset", "batch_size", "block_size", "lr", "min_lr", "warmup", "weight_decay",
            "grad_clip", "seed", "data", "dtype", "device")


def configure(parser) -> None:
    parser.add_argument("--preset", default="mini", help="model preset (default: mini, vocab 256)")
    parser.add_argument("--steps", type=int, default=200, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=None,
                        help="context length (default: the preset's block_size)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--min-lr", type=float, default=None, help="final LR (default: lr/10)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warmup steps (default: steps/10, at most 100)")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="a text file (default: the stdlib corpus)")
    parser.add_argument("--out", default="out", help="checkpoint directory (default: out)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..memory import keep_freed_memory
    keep_freed_memory()          # this process trains: reuse freed pages (see nanonorm.memory)
    train(args)
    return 0


def train(args, *, on_step=None) -> list[float]:
    """Run (or resume) training; returns the losses of the steps run now. `on_step(step)`,
    if given, is called after each completed step (tests use it to simulate a crash)."""
    import numpy as np
    from tqdm import tqdm

    from ..data import load_corpus, split
    from ..optim import clip_grad_norm, cosine_lr

    for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    out = Path(args.out)
    model, opt, rng, start, s = (_resume(out, args) if args.resume else _fresh(args))
    train_data, val_data = split(load_corpus(s["data"]))
    total = args.steps
    print(f"{model!r}\ncorpus: {len(train_data):,} train / {len(val_data):,} val bytes"
          f"{' from ' + s['data'] if s['data'] else ' (Python stdlib sources)'}; "
          f"steps {start}..{total}", flush=True)
    losses, pending = [], []
    bar = tqdm(range(start, total), initial=start, total=total, disable=args.no_progress,
               unit="step", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    for step in bar:
        x, y = _batch(train_data, s, rng)
        opt.lr = cosine_lr(step, max_lr=s["lr"], warmup=s["warmup"], total=total,
                           min_lr=s["min_lr"])
        _, loss = model.forward(x, y)
        grads = model.backward()
        norm = clip_grad_norm(grads, s["grad_clip"])
        opt.step(grads)
        pending.append(loss)                 # read back at log time, not every step
        tokens += x.size
        done = step + 1
        if done % args.log_every == 0 or done == total:
            losses += [float(v) for v in pending]
            pending.clear()
            rate = tokens / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", tok_s=f"{rate:,.0f}")
            bar.write(f"step {done:6d}/{total}  loss {losses[-1]:.4f}  lr {opt.lr:.2e}  "
                      f"grad norm {float(norm):.3f}  {rate:,.0f} tok/s")
            t0, tokens = time.perf_counter(), 0
        if done % args.checkpoint_every == 0 or done == total:
            save_state(out, model, opt, rng, done, s)
            t0 = time.perf_counter()         # tokens/s counts training time only
        if on_step is not None:
            on_step(step)
    bar.close()
    if start < total:
        print(f"val loss {evaluate(model, val_data, s):.4f} (log(256) = {np.log(256):.4f}); "
              f"checkpoint in {out}/")
    else:
        print(f"{out}/ is already at step {start} of {total}; nothing to do")
    return losses


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


def _fresh(args):
    import numpy as np

    from ..data import fingerprint, load_corpus
    from ..gpt import GPT, GPTConfig

    preset = GPTConfig.preset(args.preset)
    block = args.block_size or preset.block_size
    config = GPTConfig.preset(args.preset, block_size=block)
    s = {k: getattr(args, k) for k in SETTINGS}
    s.update(block_size=block, min_lr=args.lr / 10 if args.min_lr is None else args.min_lr,
             warmup=min(100, args.steps // 10) if args.warmup is None else args.warmup)
    s["corpus"] = fingerprint(load_corpus(args.data))
    model = GPT(config, seed=args.seed, dtype=args.dtype, device=args.device)
    opt = model.configure_optimizer(lr=args.lr, weight_decay=args.weight_decay)
    return model, opt, np.random.default_rng(args.seed), 0, s


def save_state(out: Path, model, opt, rng, step: int, settings: dict) -> None:
    """model.safetensors + config.json for sampling, then the one-file training state."""
    import numpy as np
    from safetensors.numpy import save_file

    from ..backend import to_numpy
    from ..checkpoint import atomic_write, hf_config

    model.save(out)
    state = opt.state_dict()
    tensors = {}
    for prefix, arrays in (("model", model.parameters()), ("m", state["m"]), ("v", state["v"])):
        tensors.update({f"{prefix}/{n}": np.ascontiguousarray(to_numpy(a))
                        for n, a in arrays.items()})
    optim = {k: v for k, v in state.items() if k not in ("m", "v")}
    meta = {"step": str(step), "rng": json.dumps(rng.bit_generator.state),
            "optim": json.dumps(optim), "settings": json.dumps(settings),
            "config": json.dumps(hf_config(model.config))}
    atomic_write(out / STATE_NAME, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _resume(out: Path, args):
    import numpy as np
    from safetensors import safe_open

    from ..checkpoint import config_from_hf
    from ..data import fingerprint, load_corpus
    from ..gpt import GPT

    path = out / STATE_NAME
    if not path.is_file():
        raise SystemExit(f"--resume: no {STATE_NAME} in {str(out)!r}")
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    s = json.loads(meta["settings"])
    if fingerprint(load_corpus(s["data"])) != s["corpus"]:
        raise SystemExit(f"--resume: the corpus ({s['data'] or 'stdlib'}) differs from the one "
                         f"this run started with")
    config = config_from_hf(json.loads(meta["config"]), str(path))
    take = lambda prefix: {k.split("/", 1)[1]: v for k, v in tensors.items()
                           if k.startswith(prefix + "/")}
    model = GPT._from_arrays(config, take("model"), dtype=s["dtype"], device=s["device"])
    opt = model.configure_optimizer(lr=s["lr"], weight_decay=s["weight_decay"])
    opt.load_state_dict({**json.loads(meta["optim"]), "m": take("m"), "v": take("v")})
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(meta["rng"])
    step = int(meta["step"])
    print(f"resuming from {path} at step {step}", flush=True)
    return model, opt, rng, step, s
