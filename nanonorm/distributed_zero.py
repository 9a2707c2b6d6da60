"""AdamW with its moments split across the ranks (ZeRO stage 1), for data-parallel training.

The parameters, laid end to end in name order, are cut into one contiguous shard per rank.
A step reduce-scatters the summed gradients (each rank receives the mean of its shard only),
clips them by the global norm (the shards' squared norms added in rank order, the same on
every rank), runs the ordinary AdamW update on its shard (views into the parameters), and
all-gathers the updated shards. Each rank holds 2·P/N moments instead of 2·P; the update is
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
        lo, hi = group.rank * self.part, min(self.total, (group.rank + 1) * self.part)
        self.segments = []                  # (name, start, stop) within the flat parameter
        start = 0
        for name, size in zip(self.names, sizes):
            a, b = max(lo, start), min(hi, start + size)
            if a < b:
                self.segments.append((name, a - start, b - start))
            start += size
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
        flat = xp.zeros(self.part * g.size, dtype=dt)
        start = 0
        for name in self.names:
            size = int(self.params[name].size)
            flat[start:start + size] = _flat(grads[name])
            start += size
        mine = self._reduce_scatter(flat)                           # (part,) summed
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

    def _reduce_scatter(self, flat):
        g = self.group
        if g.size == 1:
            return flat
        from mpi4py import MPI
        mine = np.empty(self.part, flat.dtype)                      # this rank's sums
        g.comm.Reduce_scatter_block(flat, mine, op=MPI.SUM)
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
        g = self.group
        if g.size == 1:
            return
        full = np.empty(self.part * g.size, self._dtype())
        g.comm.Allgather(self._packed(_flat(self.params[n])[a:b] for n, a, b in self.segments),
                         full)
        self._scatter_into(full, self.params)

    def _dtype(self):
        return self.params[self.names[0]].dtype

    def _scatter_into(self, full, arrays: dict) -> None:
        start = 0
        for name in self.names:
            size = int(arrays[name].size)
            arrays[name][...] = full[start:start + size].reshape(arrays[name].shape)
            start += size

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
                self._scatter_into(gathered, arrays)
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


def shard_optimizer(opt: AdamW, group: Group) -> ShardedAdamW:
    """A ShardedAdamW over opt's parameters with opt's hyperparameters (opt's own moments,
    allocated as untouched zeros, are dropped)."""
    return ShardedAdamW(opt.params, group, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                        weight_decay=opt.weight_decay, no_decay=opt.no_decay)
