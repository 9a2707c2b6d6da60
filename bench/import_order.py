"""The bench's import-order rows: the same training step in fresh processes that import torch
before or after nanonorm's kernels. Importing changes nothing in the process (the threading
layer is chosen at the first kernel launch), so both must run the same kernels at the same
speed; each row names the threading layer its process ended on."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

ORDERS = {"torch imported first": "import torch, nanonorm.kernels.cpu",
          "torch imported after": "import nanonorm.kernels.cpu, torch"}

CHILD = """
{imports}
import json, statistics, time
import numba, numpy as np, nanonorm
model = nanonorm.GPT(nanonorm.GPTConfig.preset({preset!r}), seed=0)
opt = model.configure_optimizer(lr=1e-4)
idx = np.random.default_rng(0).integers(0, model.config.vocab_size, ({batch}, {seq} + 1))
def step():
    model.forward(idx[:, :-1], targets=idx[:, 1:])
    opt.step(model.backward())
step()
times = []
for _ in range({steps}):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps(dict(s=statistics.median(times), layer=numba.threading_layer())))
"""


def _child(imports: str, size: dict) -> dict:
    code = CHILD.format(imports=imports, **size)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"{imports!r}: {run.stderr.strip().splitlines()[-1:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def rows(*, quick: bool = False, rounds: int = 3) -> list[dict]:
    """One row per import order: the median step over `rounds` alternated processes."""
    size = (dict(preset="tiny", batch=2, seq=16, steps=3) if quick
            else dict(preset="mini", batch=8, seq=128, steps=5))
    runs = {order: [] for order in ORDERS}
    for _ in range(rounds):                       # alternated: drift lands on both alike
        for order, imports in ORDERS.items():
            runs[order].append(_child(imports, size))
    out = []
    for order, results in runs.items():
        ms = statistics.median(r["s"] for r in results) * 1e3
        layers = sorted({r["layer"] for r in results})
        out.append(dict(case="train_step_by_import_order", size=size, provider=f"numba, {order}",
                        ms=ms, threading_layer=",".join(layers), repeats=size["steps"] * rounds))
    first = out[0]["ms"]
    for r in out:
        r["ratio_to_first"] = r["ms"] / first
    return out


def render(rows_) -> str:
    lines = ["| provider | median step ms | threading layer | vs torch first |",
             "| --- | ---: | --- | ---: |"]
    lines += [f"| {r['provider']} | {r['ms']:.1f} | {r['threading_layer']} | "
              f"{r['ratio_to_first']:.2f} |" for r in rows_]
    return "\n".join(lines)
