"""The short trainings of studies 6, 7 and 9: a byte-level GPT on the standard library's source
(`nanonorm.data`), AdamW as `GPT.configure_optimizer` sets it up, a constant learning rate and
no gradient clipping (clipping would hide the divergence study 9 looks for)."""
from __future__ import annotations

import functools
import math
import time
from typing import Callable

import numpy as np

from .. import data

CORPUS_BYTES = 400_000      # the first ~400 KB of the stdlib corpus: ample for a few hundred steps


@functools.lru_cache(maxsize=2)
def corpus(max_bytes: int = CORPUS_BYTES) -> np.ndarray:
    """The training split of the stdlib corpus's first max_bytes bytes, uint8 (N,)."""
    train, _ = data.split(data.stdlib_corpus(max_bytes))
    train.setflags(write=False)     # shared by every training of the report
    return train


def gpt_loss_and_grads(model, idx, targets) -> tuple[float, dict]:
    """GPT's own forward and backward."""
    _, loss = model.forward(idx, targets, return_logits=False)
    return float(loss), model.backward()


def train(model, *, steps: int, batch: int, seq: int, lr: float, seed: int,
          grad_fn: Callable = gpt_loss_and_grads, keep: Callable[[dict], dict] | None = None,
          on_step: Callable[[int], None] | None = None, max_seconds: float = math.inf) -> dict:
    """Train `model` in place; batches come from a generator seeded with `seed`, so two runs
    with the same seed see the same batches. keep(grads) chooses the gradients the optimizer
    applies (the others' parameters stay as they are). Stops at the first non-finite loss
    (the run diverged) or after max_seconds; on_step(step) is called after each step."""
    opt = model.configure_optimizer(lr=lr)
    rng = np.random.default_rng(seed)
    text = corpus()
    losses, t0 = [], time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):   # a diverging run overflows: recorded
        for step in range(steps):
            idx, targets = data.get_batch(text, batch, seq, rng)        # (B, T) each
            loss, grads = grad_fn(model, idx, targets)
            losses.append(loss)
            if not math.isfinite(loss):
                break
            opt.step(keep(grads) if keep else grads)
            if on_step:
                on_step(step + 1)
            if time.perf_counter() - t0 > max_seconds:
                break
    return {"losses": losses, "steps_run": len(losses), "steps": steps, "batch": batch,
            "seq": seq, "lr": lr, "seed": seed, "seconds": time.perf_counter() - t0,
            "stopped_by_time": len(losses) < steps and math.isfinite(losses[-1])}
