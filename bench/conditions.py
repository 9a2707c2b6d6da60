"""The bench's rows for one training step under the conditions of real use, each in fresh
processes: alone, with torch imported first or after, after a user's own parallel `@njit` loop,
after attention, and beside a busy process that takes one core. The kernels run on nanonorm's
own threads, which sleep between kernels, so none of what ran before should change the step
(within the machine's noise) and a busy core should cost no more than that core (<= ~2x on
two cores); each row names the threads its process ran on and whether Numba's own threading
layer was ever started."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

USER_LOOP = """
from numba import njit, prange
@njit(parallel=True)
def triad(a):
    for i in prange(a.size):
        a[i] += 1.0
triad(np.zeros(1 << 22))
"""
ATTENTION = """
import nanonorm.functional as F
_q = np.random.default_rng(1).standard_normal((4, 12, 1024, 64)).astype(np.float32)
F.scaled_dot_product_attention_backward(_q, F.scaled_dot_product_attention_forward(
    _q, _q, _q, causal=True)[1])
"""
# name -> (code run before the model, whether a busy process runs beside)
CONDITIONS = {
    "alone": ("import nanonorm.kernels.cpu", False),
    "torch imported first": ("import torch, nanonorm.kernels.cpu", False),
    "torch imported after": ("import nanonorm.kernels.cpu, torch", False),
    "after a user's parallel @njit loop": ("import numpy as np" + USER_LOOP, False),
    "after attention fwd+bwd": ("import numpy as np" + ATTENTION, False),
    "beside a busy process on one core": ("import nanonorm.kernels.cpu", True),
}

CHILD = """
{before}
import json, statistics, time
import numpy as np, nanonorm
from nanonorm.kernels.cpu import pool
import numba.np.ufunc.parallel as parallel
model = nanonorm.GPT(nanonorm.GPTConfig.preset({preset!r}), seed=0)
opt = model.configure_optimizer(lr=1e-4)
idx = np.random.default_rng(0).integers(0, model.config.vocab_size, ({batch}, {seq} + 1))
def step():
    model.forward(idx[:, :-1], targets=idx[:, 1:], return_logits=False)
    opt.step(model.backward())
step()
times = []
for _ in range({steps}):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps(dict(s=statistics.median(times), threads="nanonorm x%d, numba %s" % (
    pool.threads(), "started" if parallel._is_initialized else "not started"))))
"""
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def _child(before: str, busy: bool, size: dict) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        run = subprocess.run([sys.executable, "-c", CHILD.format(before=before, **size)],
                             capture_output=True, text=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if run.returncode:
        raise RuntimeError(f"{before!r}: {run.stderr.strip().splitlines()[-1:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def rows(*, quick: bool = False, rounds: int = 2, conditions=None) -> list[dict]:
    """One row per condition: the median step over `rounds` alternated processes."""
    size = (dict(preset="tiny", batch=2, seq=16, steps=3) if quick
            else dict(preset="gpt2", batch=4, seq=256, steps=2))
    wanted = {k: v for k, v in CONDITIONS.items() if conditions is None or k in conditions}
    runs = {name: [] for name in wanted}
    for _ in range(rounds):                       # alternated: drift lands on all alike
        for name, (before, busy) in wanted.items():
            runs[name].append(_child(before, busy, size))
    out = []
    for name, results in runs.items():
        ms = statistics.median(r["s"] for r in results) * 1e3
        out.append(dict(case="train_step_under_conditions", size=size, provider=name, ms=ms,
                        threads=",".join(sorted({r["threads"] for r in results})),
                        repeats=size["steps"] * rounds))
    first = out[0]["ms"]
    for r in out:
        r["ratio_to_alone"] = r["ms"] / first
    return out


def render(rows_) -> str:
    lines = ["| training step | median ms | threads | vs alone |", "| --- | ---: | --- | ---: |"]
    lines += [f"| {r['provider']} | {r['ms']:.1f} | {r['threads']} | "
              f"{r['ratio_to_alone']:.2f} |" for r in rows_]
    return "\n".join(lines)
