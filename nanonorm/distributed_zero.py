"""AdamW with its moments split across the ranks (ZeRO stage 1), for data-parallel training.

The parameters, laid end to end in name order, are cut into one contiguous shard per rank.
A step reduce-scatters the summed gradients (each rank receives the mean of its shard only),
clips them by the global norm (the shards' squared norms added in rank order, the same on
every rank), runs the ordinary AdamW update on its shard (views into the parameters), and
all-gathers the updated shards; both collectives go in chunks of the flat space, so no rank
holds a flat copy of all gradients or parameters. Each rank holds 2·P/N moments instead of 2·P; the update is
AdamW's elementwise formula on the same numbers as an unsharded step, so the run matches one
within the rounding of the norm. `state_dict()` gathers the whole moments on rank 0, in
AdamW's format: a checkpoint does not depend on how many ranks wrote it.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_namespace
from .distributed import Group
from .optim import AdamW

__all__ = ["ShardedAdamW", "shard_optimizer"]


class ShardedAdamW:
    """AdamW over this rank's shard of `params` (see the module docstring)."""

    def __init__(self, params: dict, group: Group, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.01, no_decay=()):
        self.params, self.group = params, group
        self.names = list(params)
        sizes = [int(params[n].size) for n in self.names]
        self.total = sum(sizes)
        self.part = -(-self.total // group.size)                    # padded shard length
        self.layout = _Layout(self.names, sizes)
        lo, hi = group.rank * self.part, min(self.total, (group.rank + 1) * self.part)
        # (name, start, stop) within each parameter, flat: this rank's shard
        self.segments = [(n, a, b) for n, a, b, _ in self.layout.overlaps(lo, hi)]
        for name in self.names:
            if not getattr(params[name], "flags", {"C_CONTIGUOUS": True})["C_CONTIGUOUS"]:
                raise ValueError(f"parameter {name!r} must be C-contiguous: its shard is "
                                 f"updated through a flat view")
        views = {n: _flat(params[n])[a:b] for n, a, b in self.segments}
        self.xp = array_namespace(*params.values())
        self.inner = AdamW(views or {"_": self.xp.zeros(1, dtype=params[self.names[0]].dtype)},
                           lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                           no_decay=[n for n in no_decay if n in views])
        self.all_no_decay = frozenset(no_decay)
        self.steps_done = 0

    @property
    def lr(self) -> float:
        return self.inner.lr

    @lr.setter
    def lr(self, value) -> None:
        self.inner.lr = value

    def step(self, grads: dict, max_norm: float = math.inf):
        """Update every parameter from `grads`, each rank's gradients summed over its
        micro-batches (their mean over the ranks is taken here), clipped to max_norm by
        their global norm; returns that norm (before clipping) as a 0-d array."""
        xp, g = self.xp, self.group
        dt = self.params[self.names[0]].dtype
        mine = self._reduce_scatter(grads)                          # (part,) summed
        mine *= dt.type(1.0 / g.size)
        used = sum(b - a for _, a, b in self.segments)
        local = float(xp.sum(xp.astype(mine[:used], xp.float64) ** 2))
        norm = math.sqrt(g.sum_scalar(local))
        coef = min(1.0, max_norm / (norm + 1e-6))
        if coef < 1.0:
            mine *= dt.type(coef)
        shard, offset = {}, 0
        for name, a, b in self.segments:
            shard[name] = mine[offset:offset + b - a]
            offset += b - a
        if shard:
            self.inner.step(shard)
        self.steps_done += 1
        self._gather_parameters()
        return xp.asarray(norm, dtype=dt)

    def _chunks(self):
        """[c0, c1) ranges of the padded flat parameter space, CHUNK elements each, with the
        elements of each that every rank's shard holds (recvcounts) and where they start."""
        g, part = self.group, self.part
        for c0 in range(0, part * g.size, CHUNK):
            c1 = min(part * g.size, c0 + CHUNK)
            counts = [max(0, min(c1, (r + 1) * part) - max(c0, r * part)) for r in range(g.size)]
            yield c0, c1, counts, [sum(counts[:r]) for r in range(g.size)]

    def _reduce_scatter(self, grads: dict):
        """This rank's shard of Σ_ranks grads, one chunk of the flat gradients at a time (a
        flat copy of all of them would cost a rank P more floats at its peak)."""
        g = self.group
        mine = self.xp.zeros(self.part, dtype=self._dtype())        # this rank's sums
        if g.size == 1:
            self.layout.read(grads, 0, self.total, mine)
            return mine
        from mpi4py import MPI
        lo = g.rank * self.part
        for c0, c1, counts, _ in self._chunks():
            send = np.zeros(c1 - c0, self._dtype())
            self.layout.read(grads, c0, min(c1, self.total), send)
            start = max(c0, lo) - lo
            g.comm.Reduce_scatter(send, mine[start:start + counts[g.rank]], counts, op=MPI.SUM)
        return mine

    def _packed(self, pieces):
        """This rank's pieces (1-D, in segment order) as one flat array of the shard's padded
        length."""
        out = self.xp.zeros(self.part, dtype=self._dtype())
        offset = 0
        for piece in pieces:
            out[offset:offset + piece.size] = piece
            offset += piece.size
        return out

    def _gather_parameters(self) -> None:
        """Every rank's updated shard into every rank's parameters, a chunk at a time."""
        g = self.group
        if g.size == 1:
            return
        lo = g.rank * self.part
        for c0, c1, counts, displs in self._chunks():
            a = max(c0, lo)
            piece = np.zeros(counts[g.rank], self._dtype())          # this rank's part of it
            self.layout.read(self.params, a, min(a + piece.size, self.total), piece)
            chunk = np.empty(c1 - c0, self._dtype())
            g.comm.Allgatherv(piece, [chunk, (counts, displs)])
            self.layout.write(self.params, c0, min(c1, self.total), chunk)

    def _dtype(self):
        return self.params[self.names[0]].dtype

    def state_dict(self) -> dict:
        """AdamW's state_dict on rank 0, the moments gathered whole (a collective: every rank
        calls it; the others get None for the moments)."""
        hyper = self.inner.state_dict()
        full = {}
        for key in ("m", "v"):
            local = self._packed(getattr(self.inner, key)[n] for n, _, _ in self.segments)
            gathered = (np.empty(self.part * self.group.size, self._dtype())
                        if self.group.rank == 0 else None)
            if self.group.size == 1:
                gathered = local
            else:
                self.group.comm.Gather(local, gathered, root=0)
            if self.group.rank == 0:
                arrays = {n: np.empty(self.params[n].shape, self._dtype()) for n in self.names}
                self.layout.write(arrays, 0, self.total, gathered)
                full[key] = arrays
            else:
                full[key] = None
        no_decay = sorted(self.all_no_decay)
        return {"m": full["m"], "v": full["v"],
                "steps": {n: self.steps_done for n in self.names}, "lr": hyper["lr"],
                "betas": hyper["betas"], "eps": hyper["eps"],
                "weight_decay": hyper["weight_decay"], "no_decay": no_decay}

    def load_state_dict(self, state: dict) -> None:
        """Restore AdamW's state_dict (whole moments, e.g. from a checkpoint written by any
        number of ranks): this rank keeps its shard. Checked as AdamW checks it."""
        for key in ("m", "v", "steps"):
            if not isinstance(state.get(key), dict) or set(state[key]) != set(self.names):
                raise ValueError(f"optimizer state {key!r} must be a dict naming exactly the "
                                 f"parameters")
        counts = set(state["steps"].values())
        if len(counts) != 1:
            raise ValueError("optimizer state steps must be the same for every parameter "
                             "(a sharded optimizer steps them together)")
        inner = {key: {n: _flat(np.asarray(state[key][n]))[a:b] for n, a, b in self.segments}
                 for key in ("m", "v")}
        rest = {k: v for k, v in state.items() if k not in ("m", "v", "steps", "no_decay")}
        names = [n for n, _, _ in self.segments]
        if names:
            self.inner.load_state_dict({**rest, **inner,
                                        "steps": {n: state["steps"][n] for n in names},
                                        "no_decay": [n for n in state.get("no_decay", ())
                                                     if n in names]})
        self.all_no_decay = frozenset(state.get("no_decay", self.all_no_decay))
        self.steps_done = counts.pop()


def _flat(a):
    return a.reshape(-1)


# elements per chunk of the sharded step's collectives (25 MB of float32, DDP's bucket)
CHUNK = 25 << 18


class _Layout:
    """The parameters laid end to end in name order: copy a flat range [a, b) out of a dict of
    arrays, or into it."""

    def __init__(self, names, sizes):
        self.spans, start = [], 0
        for name, size in zip(names, sizes):
            self.spans.append((name, start, start + size))
            start += size

    def overlaps(self, a: int, b: int):
        """(name, start, stop within it, offset from a) of each array meeting [a, b)."""
        for name, s0, s1 in self.spans:
            lo, hi = max(a, s0), min(b, s1)
            if lo < hi:
                yield name, lo - s0, hi - s0, lo - a

    def read(self, arrays: dict, a: int, b: int, out) -> None:
        for name, i0, i1, at in self.overlaps(a, b):
            out[at:at + i1 - i0] = _flat(arrays[name])[i0:i1]

    def write(self, arrays: dict, a: int, b: int, src) -> None:
        for name, i0, i1, at in self.overlaps(a, b):
            _flat(arrays[name])[i0:i1] = src[at:at + i1 - i0]


def shard_optimizer(opt: AdamW, group: Group) -> ShardedAdamW:
    """A ShardedAdamW over opt's parameters with opt's hyperparameters (opt's own moments,
    allocated as untouched zeros, are dropped)."""
    return ShardedAdamW(opt.params, group, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                        weight_decay=opt.weight_decay, no_decay=opt.no_decay)
