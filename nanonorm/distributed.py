"""Data-parallel training over MPI (mpi4py), and on GPUs over NCCL (CuPy), never a transport of
its own: the ranks of one run, and the collectives a training step needs.

A process started by an MPI launcher (`mpiexec -n 2 python train.py`, or `nanonorm train
--nproc 2`, which runs mpiexec) is one rank of `world()`; a plain process is a group of one,
for which every collective returns at once and nothing imports mpi4py. Every collective gives
the same bits on every rank: sums are reduce-scattered (each part summed once, by one rank)
and then gathered, so the ranks' parameters never drift apart. A rank that raises takes the
job down (MPI_Abort) instead of leaving the others waiting in a collective.

    from nanonorm import GPT, GPTConfig, distributed as dist
    group = dist.init()                           # rank, size from the launcher
    model = GPT(GPTConfig.preset("tiny"), seed=0)     # the same initial weights on every rank
    dist.broadcast_parameters(model.parameters(), group)   # or make sure of it
    opt = model.configure_optimizer()
    for step in range(10):
        x, y = my_batch(step, group.rank)         # this rank's share of the step's batch
        model.forward(x, y, return_logits=False)
        grads = dist.average_gradients(model.backward(), group)
        opt.step(grads)                           # identical on every rank
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from .backend import array_namespace, backend_name

__all__ = ["Group", "init", "world", "launched_size", "local_size", "average_gradients",
           "broadcast_parameters", "use_gpus", "GradientReducer", "mpiexec_path",
           "BUCKET_BYTES"]

# gradients travel in buckets of about this many bytes (DDP's default): big enough for the
# network's bandwidth, small enough that the next bucket is packed while one is in flight
BUCKET_BYTES = 25 << 20

_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
_LOCAL_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")


def _env_int(names) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def mpiexec_path() -> str | None:
    """The MPI launcher: the mpich wheel's beside this interpreter (the dist extra), else the
    first on PATH; None without one."""
    import shutil
    from pathlib import Path
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def launched_size() -> int:
    """How many ranks the MPI launcher started (1 outside a launcher); read from its
    environment, so nothing is imported or initialised to ask."""
    return _env_int(_SIZE_VARS[:3]) or 1


def local_size() -> int:
    """Ranks on this machine: they share its cores (each rank's kernel threads default to
    its share)."""
    return _env_int(_LOCAL_VARS[:2]) or launched_size()


class Group:
    """The ranks of one data-parallel run. `comm` is mpi4py's communicator (None for a group
    of one); `nccl`, set by `use_nccl`, carries CuPy arrays between GPUs."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.nccl = None

    def __repr__(self) -> str:
        return f"Group(rank={self.rank}, size={self.size})"

    def barrier(self) -> None:
        if self.size > 1:
            self.comm.Barrier()

    def broadcast_object(self, obj, root: int = 0):
        """root's `obj` (a small picklable value) on every rank."""
        return obj if self.size == 1 else self.comm.bcast(obj, root=root)

    def sum_scalar(self, value: float) -> float:
        """Σ over ranks of a float, added in rank order: the same bits on every rank."""
        if self.size == 1:
            return float(value)
        return math.fsum(self.comm.allgather(float(value)))

    def sum_flat(self, buf) -> None:
        """buf (1-D, contiguous) summed over ranks in place, the same bits on every rank:
        reduce-scatter (each part summed once, by its rank), then all-gather."""
        if self.size == 1:
            return
        part = -(-buf.shape[0] // self.size)
        padded = buf if part * self.size == buf.shape[0] else _padded(buf, part * self.size)
        mine = _empty_like(padded, part)
        if self.nccl is not None and backend_name(buf) == "cupy":
            self.nccl.reduce_scatter_then_gather(padded, mine)
        else:
            from mpi4py import MPI
            self.comm.Reduce_scatter_block(_host(padded), mine, op=MPI.SUM)
            self.comm.Allgather(mine, padded)
        if padded is not buf:
            buf[...] = padded[:buf.shape[0]]

    def abort(self, status: int = 1) -> None:
        """End every rank of the job now (a rank that stops alone would leave the others
        waiting in their next collective)."""
        if self.size > 1:
            sys.stderr.flush()
            self.comm.Abort(status)


def _padded(buf, n: int):
    out = _empty_like(buf, n)
    out[:buf.shape[0]] = buf
    out[buf.shape[0]:] = 0
    return out


def _empty_like(buf, n: int):
    if backend_name(buf) == "cupy":
        import cupy
        return cupy.empty(n, buf.dtype)
    return np.empty(n, buf.dtype)


def _host(buf):
    if backend_name(buf) == "cupy":             # MPI without NCCL: through the host
        return buf.get()
    return buf


_world: Group | None = None


def init() -> Group:
    """This process's group: the MPI world when an MPI launcher started it (mpi4py imported
    and initialised here, and a rank that raises ends the job), else a group of one."""
    global _world
    if _world is not None:
        return _world
    if launched_size() == 1:
        _world = Group()
        return _world
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(f"this process was started by an MPI launcher but mpi4py cannot "
                           f"be imported ({e}): pip install \"nanonorm[dist]\"") from e
    _world = Group(MPI.COMM_WORLD)
    if _world.size > 1:
        _abort_on_uncaught_exception(_world)
    return _world


def world() -> Group:
    """The group `init()` made (initialising it on first use)."""
    return _world or init()


class _Nccl:
    """NCCL between the ranks' GPUs (CuPy's binding), bootstrapped over MPI: rank 0's unique
    id is broadcast, then every collective runs on the current stream, device to device."""

    def __init__(self, group: Group):
        from cupy.cuda import nccl
        uid = group.comm.bcast(nccl.get_unique_id() if group.rank == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(group.size, uid, group.rank)

    def reduce_scatter_then_gather(self, padded, mine) -> None:
        import cupy
        from cupy.cuda import nccl
        kind = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                np.dtype(np.float64): nccl.NCCL_FLOAT64}[np.dtype(padded.dtype)]
        stream = cupy.cuda.get_current_stream().ptr
        self.comm.reduceScatter(padded.data.ptr, mine.data.ptr, mine.size, kind, nccl.NCCL_SUM,
                                stream)
        self.comm.allGather(mine.data.ptr, padded.data.ptr, mine.size, kind, stream)


def use_gpus(group: Group) -> None:
    """One GPU per rank (the local rank's, round robin) and NCCL for the group's CuPy
    collectives."""
    import cupy
    local = int(os.environ.get("MPI_LOCALRANKID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK",
                                                                  group.rank)))
    cupy.cuda.Device(local % cupy.cuda.runtime.getDeviceCount()).use()
    if group.size > 1:
        group.nccl = _Nccl(group)


def _abort_on_uncaught_exception(group: Group) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"nanonorm: rank {group.rank} of {group.size} failed; ending the "
                         f"job\n")
        group.abort(1)
    sys.excepthook = hook


class _Buckets:
    """Names grouped, in the order they come, into buckets of about `limit` bytes: the same
    buckets on every rank, since every rank hands them over in the same order."""

    def __init__(self, limit: int):
        self.limit, self.names, self.bytes = limit, [], 0

    def add(self, name: str, nbytes: int) -> list | None:
        """The bucket this name fills, or None while it is still open."""
        self.names.append(name)
        self.bytes += nbytes
        return self.close() if self.bytes >= self.limit else None

    def close(self) -> list | None:
        """The open bucket (None if empty), and a new one begun."""
        bucket, self.names, self.bytes = self.names, [], 0
        return bucket or None


def _unpack(flat, grads: dict, names, scale: float) -> None:
    """grads[n] = scale · its part of flat, for the names packed end to end into flat."""
    flat *= scale
    start = 0
    for n in names:
        size = grads[n].size
        grads[n][...] = flat[start:start + size].reshape(grads[n].shape)
        start += size


def average_gradients(grads: dict, group: Group | None = None, *,
                      bucket_bytes: int = BUCKET_BYTES) -> dict:
    """`grads` (name -> array) replaced in place by their mean over the group's ranks, the
    same bits on every rank; returns the dict. The arrays travel in buckets of about
    `bucket_bytes`, last parameters first (the order a backward produces them), each packed
    into one flat buffer."""
    group = group or world()
    if group.size == 1:
        return grads
    xp = array_namespace(*grads.values())
    open_bucket, buckets = _Buckets(bucket_bytes), []
    for name in reversed(list(grads)):
        buckets.append(open_bucket.add(name, grads[name].nbytes))
    buckets.append(open_bucket.close())
    for bucket in filter(None, buckets):
        flat = xp.concatenate([xp.reshape(grads[n], (-1,)) for n in bucket])
        group.sum_flat(flat)
        _unpack(flat, grads, bucket, 1.0 / group.size)
    return grads


class GradientReducer:
    """average_gradients, started during the backward: `GPT.backward(on_ready=r.ready)` hands
    over each block's gradients as they become final; they fill buckets in that order, and a
    full bucket is packed and its reduce-scatter started (non-blocking), so it travels while
    the backward goes on, as far as the MPI library progresses it (MPICH advances it whenever
    a later bucket is started or tested); `finish(grads)` sends the rest, waits, all-gathers
    and writes the means back. The result is average_gradients' bits (elementwise the same
    sums). `seconds` counts the wall time spent inside MPI calls (a bench reads it)."""

    def __init__(self, group: Group, *, bucket_bytes: int = BUCKET_BYTES):
        self.group, self.bucket_bytes, self.seconds = group, bucket_bytes, 0.0
        self.reset()

    def reset(self) -> None:
        self.done, self.open = set(), _Buckets(self.bucket_bytes)
        self.pending = []                           # (names, flat, mine, request) per bucket

    def ready(self, grads: dict, names) -> None:
        for name in names:
            self.done.add(name)
            bucket = self.open.add(name, grads[name].nbytes)
            if bucket:
                self._start(grads, bucket)

    def _start(self, grads: dict, bucket) -> None:
        import time

        from mpi4py import MPI
        flat = np.concatenate([grads[n].reshape(-1) for n in bucket])
        part = -(-flat.shape[0] // self.group.size)
        flat = _padded(flat, part * self.group.size) if part * self.group.size != flat.size \
            else flat
        mine = np.empty(part, flat.dtype)
        t0 = time.perf_counter()
        request = self.group.comm.Ireduce_scatter_block(flat, mine, op=MPI.SUM)
        MPI.Request.Testall([p[3] for p in self.pending] + [request])   # progress
        self.seconds += time.perf_counter() - t0
        self.pending.append((bucket, flat, mine, request))

    def finish(self, grads: dict) -> dict:
        """Wait for every bucket, all-gather it and write the mean into `grads`."""
        import time

        from mpi4py import MPI
        self.ready(grads, [n for n in grads if n not in self.done])  # not handed over yet
        last = self.open.close()
        if last:
            self._start(grads, last)
        t0 = time.perf_counter()
        MPI.Request.Waitall([p[3] for p in self.pending])
        for bucket, flat, mine, _ in self.pending:
            self.group.comm.Allgather(mine, flat)
            _unpack(flat, grads, bucket, 1.0 / self.group.size)
        self.seconds += time.perf_counter() - t0
        self.reset()
        return grads


def broadcast_parameters(params: dict, group: Group | None = None, root: int = 0) -> None:
    """Every rank's parameters (name -> array, in place) set to root's."""
    group = group or world()
    if group.size == 1:
        return
    for name in params:
        p = params[name]
        if backend_name(p) == "cupy":
            host = p.get()
            group.comm.Bcast(host, root=root)
            p.set(host)
        else:
            group.comm.Bcast(p, root=root)

