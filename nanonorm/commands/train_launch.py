"""`nanonorm train` on several processes: starting them (mpiexec), setting each rank up, and the
parts of a step that differ from one process (micro-batches, the ranks' gradients, the update).

One step on N ranks with K micro-batches of B sequences: every rank draws the step's global
batch (B·K·N sequences, the same RNG everywhere) and takes rows [(r·K + k)·B, ...) for its
micro-batch k, so the sequences of a step do not depend on the split. Each micro-batch's
backward is scaled by 1/K and summed; the ranks' sums are averaged (nanonorm.distributed) or,
with --zero 1, reduce-scattered into the sharded AdamW. K = N = 1 is exactly the single-process
step (backward(1.0), no collective).
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

from ..cli import UsageError

__all__ = ["agreed", "launch", "reducer_for", "start_rank", "step_gradients", "update"]


def _mpiexec() -> str:
    from ..distributed import mpiexec_path
    found = mpiexec_path()
    if found is None or importlib.util.find_spec("mpi4py") is None:
        raise UsageError("argument --nproc: needs MPI (mpiexec) and mpi4py: pip install "
                         "\"nanonorm[dist]\"")
    return found


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(args) -> int:
    """`nanonorm train --nproc N ...`: `mpiexec -n N python -m nanonorm train ...` (the same
    run as typing that), its exit status returned. mpiexec runs in its own session and gets
    one SIGINT/SIGTERM from here, forwarded to the ranks once (a terminal's Ctrl-C would
    reach every rank twice: directly and through mpiexec)."""
    cmd = [_mpiexec(), "-n", str(args.nproc), sys.executable, "-m", "nanonorm",
           *_without_nproc(args.argv)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    forward = lambda signum, frame: proc.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    status = 128 - status if status < 0 else status
    if status not in (0, 1, 2, 128 + signal.SIGINT, 128 + signal.SIGTERM):    # not said yet
        print(f"nanonorm train: the job ended with status {status}: one of its {args.nproc} "
              f"processes failed or was killed (mpiexec's report is above); {args.out}/ keeps "
              f"its last checkpoint", file=sys.stderr)
    return status


def start_rank(args):
    """This process's group (nanonorm.distributed.init); on several ranks each gets its share
    of the machine's cores (kernel threads, BLAS), and only rank 0 prints."""
    from .. import distributed as dist
    group = dist.init()
    if group.size == 1:
        return group
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    share = max(1, cores // dist.local_size())
    os.environ.setdefault("NANONORM_NUM_THREADS", str(share))
    from threadpoolctl import threadpool_limits
    threadpool_limits(share)                # NumPy's BLAS (the reference ops' matmuls)
    if group.rank != 0:
        sys.stdout = open(os.devnull, "w")  # logs from rank 0; errors still on stderr
        args.no_progress = True
    if args.device == "cuda":
        dist.use_gpus(group)                # one GPU per rank, NCCL between them
    return group


def agreed(group, fn):
    """fn() on every rank. If it raised on some rank, that rank raises its error and every
    other rank raises too, instead of going on to wait for it in a collective."""
    from .train import Stopped
    try:
        result, error = fn(), None
    except BaseException as e:          # noqa: BLE001 - re-raised below
        result, error = None, e
    failed = group.sum_scalar(error is not None) if group.size > 1 else 0
    if error is not None:
        raise error
    if failed:
        raise Stopped("another process failed before the first step (its error is above)", 1)
    return result


def reducer_for(model, group, zero: bool):
    """A GradientReducer sending the model's gradients during its backward, for a CPU run on
    several ranks without ZeRO (which reduce-scatters in its own step); else None."""
    from ..distributed import GradientReducer
    if group.size == 1 or zero or model.device != "cpu":
        return None
    return GradientReducer(group)       # buckets fill in the order the backward hands over


def _collector(summed: dict | None, reducer):
    """on_ready for one micro-batch's backward: its gradients, as each becomes final, added
    into the earlier micro-batches' sums (none for the first), and the sums handed to the
    reducer (given for the last micro-batch)."""
    def collect(g: dict, names) -> None:
        if summed is not None:
            for name in names:
                summed[name] += g[name]
        if reducer is not None:
            reducer.ready(g if summed is None else summed, names)
    return collect


def step_gradients(model, x, y, s: dict, group, reducer=None):
    """(the global batch's mean loss, this rank's gradients: the mean over its micro-batches)
    for the step's global batch x, y (G, T). With a reducer, the last micro-batch's backward
    hands each block's summed gradients to it as they are final."""
    b, k_count = s["batch_size"], s["grad_accum"]
    total, grads = None, None
    for k in range(k_count):
        first = (group.rank * k_count + k) * b
        _, loss = model.forward(x[first:first + b], y[first:first + b], return_logits=False)
        send = reducer if k == k_count - 1 else None
        g = model.backward(1.0 / k_count,                    # 1.0 exactly for one micro-batch
                           on_ready=_collector(grads, send))
        grads = g if grads is None else grads
        total = loss if total is None else total + loss
    loss = total if k_count == 1 else total / k_count
    if group.size > 1:
        loss = group.sum_scalar(float(loss)) / group.size
    return loss, grads


def update(opt, grads: dict, max_norm: float, group, reducer=None):
    """Average the ranks' gradients, clip them by their global norm, step; the norm."""
    from ..distributed import average_gradients
    from ..distributed_zero import ShardedAdamW
    from ..optim import clip_grad_norm
    if isinstance(opt, ShardedAdamW):
        return opt.step(grads, max_norm)
    if reducer is not None:
        reducer.finish(grads)
    else:
        average_gradients(grads, group)
    norm = clip_grad_norm(grads, max_norm)
    opt.step(grads)
    return norm
