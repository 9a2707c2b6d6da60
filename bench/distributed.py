"""Data parallelism on this machine (`python -m bench --dist`): the GPT-2 small training step
(global batch B=4, T=256, float32) on 1 process × all cores against N processes × their share,
through mpiexec, with the time each step spends in the gradients' collectives.

Each configuration runs in fresh processes (`python -m bench.distributed --child`): a warm-up
step, then median of `steps` timed steps; rank 0 reports. The step is `nanonorm train`'s
(its GradientReducer starts each bucket's reduce-scatter during the backward). Communication
time is the wall time inside its MPI calls (starting the buckets, then waiting for them and
all-gathering), which also absorbs any wait for a slower rank.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZE = dict(B=4, T=256, preset="gpt2")
QUICK = dict(B=4, T=16, preset="tiny")


def _child(quick: bool, steps: int, after: bool = False) -> dict:
    import numpy as np

    import nanonorm
    from nanonorm import distributed as dist
    from nanonorm.commands.train_launch import reducer_for, step_gradients, update
    from nanonorm.gpt import GPT, GPTConfig
    size = QUICK if quick else SIZE
    group = dist.init()
    model = GPT(GPTConfig.preset(size["preset"]), seed=0)
    opt = model.configure_optimizer(lr=1e-5)
    reducer = None if after else reducer_for(model, group, zero=False)
    spent = [0.0]
    if after:                                   # average_gradients after the backward
        collective = dist.Group.sum_flat

        def timed(self, buf):
            t0 = time.perf_counter()
            collective(self, buf)
            spent[0] += time.perf_counter() - t0
        dist.Group.sum_flat = timed
    per_rank = size["B"] // group.size
    settings = dict(batch_size=per_rank, grad_accum=1)
    rng = np.random.default_rng(0)
    times, comms = [], []
    with nanonorm.use_impl("numba"):
        for i in range(steps + 1):
            x = rng.integers(0, model.config.vocab_size, (size["B"], size["T"]))
            y = rng.integers(0, model.config.vocab_size, (size["B"], size["T"]))
            if reducer is not None:
                reducer.seconds = 0.0
            spent[0] = 0.0
            group.barrier()
            t0 = time.perf_counter()
            _, grads = step_gradients(model, x, y, settings, group, reducer)
            update(opt, grads, 1.0, group, reducer)
            group.barrier()
            if i:                                # the first step warms the kernels
                times.append(time.perf_counter() - t0)
                comms.append(reducer.seconds if reducer is not None else spent[0])
    from nanonorm.kernels.cpu import pool
    return dict(processes=group.size, threads=pool.threads(), step_s=statistics.median(times),
                comm_s=statistics.median(comms),
                sent="during it" if reducer is not None else ("after the backward" if group.size > 1 else "-"))


def rows(quick: bool = False, steps: int = 3, nprocs=(1, 2, "2-after")) -> list[dict]:
    """One row per process count, each in fresh processes; the cores split evenly. "2-after":
    2 processes sending the gradients after the backward (average_gradients) instead of
    during it."""
    from nanonorm.distributed import mpiexec_path
    mpiexec = mpiexec_path()
    cores = len(os.sched_getaffinity(0))
    out = []
    for spec in nprocs:
        n, after = int(str(spec).split("-")[0]), str(spec).endswith("-after")
        cmd = [sys.executable, "-m", f"{__package__}.distributed", "--child",
               "--steps", str(steps)] + ["--quick"] * quick + ["--after"] * after
        if n > 1:
            if mpiexec is None:
                out.append(dict(processes=n, error="no mpiexec: pip install \"nanonorm[dist]\""))
                continue
            cmd = [mpiexec, "-n", str(n)] + cmd
        env = dict(os.environ, NANONORM_NUM_THREADS=str(max(1, cores // n)))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            out.append(dict(processes=n, error=proc.stderr.strip().splitlines()[-1:]))
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def render(rows_, quick: bool = False) -> str:
    s = QUICK if quick else SIZE
    lines = [f"| processes x threads | gradients sent | {s['preset']} step, global B={s['B']}, "
             f"T={s['T']} s | in collectives s | share | vs 1 process |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    base = next((r["step_s"] for r in rows_ if r.get("processes") == 1 and "step_s" in r), None)
    for r in rows_:
        if "error" in r:
            lines.append(f"| {r['processes']} | failed: {r['error']} | | | | |")
            continue
        ratio = f"{r['step_s'] / base:.2f}" if base else ""
        lines.append(f"| {r['processes']} x {r['threads']} | {r['sent']} | {r['step_s']:.3f} | "
                     f"{r['comm_s']:.4f} | {100 * r['comm_s'] / r['step_s']:.1f}% | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.distributed",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help="run and print one row (a rank)")
    ap.add_argument("--quick", action="store_true", help="the tiny preset")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--after", action="store_true",
                    help="with --child: send the gradients after the backward")
    args = ap.parse_args(argv)
    if args.child:
        row = _child(args.quick, args.steps, args.after)
        from nanonorm.distributed import world
        if world().rank == 0:
            print(json.dumps(row), flush=True)
        return 0
    print(render(rows(args.quick, args.steps), args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
