"""AdamW (torch.optim.AdamW's semantics), gradient clipping by global norm, warmup + cosine LR.

Parameters and gradients are dicts name → array (what `GPT.parameters()` / `GPT.backward()`
give); the optimiser updates the parameter arrays in place, so the model sees the new values
without any copy. The per-tensor math is `nanonorm.ops.adamw.adamw_step`, reached through
dispatch so a fused kernel can take its place.
"""
from __future__ import annotations

import math
import numbers

from .backend import Array, array_device, array_namespace, backend_name, to_numpy
from .dispatch import resolve

__all__ = ["AdamW", "clip_grad_norm", "cosine_lr"]


def _number(name: str, value, lo: float, hi: float = math.inf, *, lo_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (lo < value if lo_open else lo <= value) or not value < hi:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}), got {value}")
    return value


class AdamW:
    """AdamW over a dict of arrays. `no_decay`: names that get no weight decay (biases, norms).

    `lr` may be changed between steps (e.g. `opt.lr = cosine_lr(step, ...)`).
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, *, no_decay=()):
        if not isinstance(params, dict) or not params:
            raise TypeError("params must be a non-empty dict of name -> array")
        self.params = params                    # the live dict: updated in place
        self.lr = _number("lr", lr, 0.0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_number("betas[0]", betas[0], 0.0, 1.0),
                      _number("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _number("eps", eps, 0.0, lo_open=True)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)
        self.no_decay = frozenset(no_decay)
        if not self.no_decay <= params.keys():
            raise ValueError(f"no_decay names not in params: "
                             f"{sorted(self.no_decay - params.keys())}")
        xp = array_namespace(*params.values(), names=tuple(params))
        self.m = {n: xp.zeros_like(p) for n, p in params.items()}   # first moments
        self.v = {n: xp.zeros_like(p) for n, p in params.items()}   # second moments
        self.steps = {n: 0 for n in params}     # per tensor, as torch counts them

    def step(self, grads: dict) -> None:
        """One update of every parameter named in `grads` (the others are left alone)."""
        unknown = grads.keys() - self.params.keys()
        if unknown:
            raise ValueError(f"gradients for unknown parameters: {sorted(unknown)}")
        beta1, beta2 = self.betas
        for name, g in grads.items():
            p = self.params[name]
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"gradient {name!r} has shape {tuple(g.shape)}, parameter "
                                 f"{tuple(p.shape)}")
            self.steps[name] += 1
            wd = 0.0 if name in self.no_decay else self.weight_decay
            resolve("adamw_step", p)(p, g, self.m[name], self.v[name], lr=self.lr, beta1=beta1,
                                     beta2=beta2, eps=self.eps, weight_decay=wd,
                                     step=self.steps[name])

    def state_dict(self) -> dict:
        """Everything a resumed run needs: the moments (the arrays themselves), step counts and
        hyperparameters."""
        return {"m": dict(self.m), "v": dict(self.v), "steps": dict(self.steps),
                "lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "no_decay": sorted(self.no_decay)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict(); validated in full before anything changes."""
        for key in ("m", "v", "steps"):
            if key not in state or set(state[key]) != set(self.params):
                raise ValueError(f"optimizer state {key!r} must name exactly the parameters")
        staged = {}
        for key in ("m", "v"):
            for name, value in state[key].items():
                target = getattr(self, key)[name]
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(f"optimizer state {key}[{name!r}] has shape "
                                     f"{tuple(value.shape)}, expected {tuple(target.shape)}")
                if backend_name(value) != backend_name(target):
                    value = to_numpy(value)
                xp = array_namespace(target)
                staged[key, name] = xp.asarray(value, dtype=target.dtype,
                                               device=array_device(target))
        for (key, name), value in staged.items():
            getattr(self, key)[name][...] = value
        self.steps = {n: int(s) for n, s in state["steps"].items()}
        self.lr = float(state.get("lr", self.lr))
        self.betas = tuple(float(b) for b in state.get("betas", self.betas))
        self.eps = float(state.get("eps", self.eps))
        self.weight_decay = float(state.get("weight_decay", self.weight_decay))
        self.no_decay = frozenset(state.get("no_decay", self.no_decay))


def clip_grad_norm(grads: dict, max_norm: float) -> Array:
    """Scale every gradient in place so their global L2 norm is at most max_norm (torch's
    clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped to 1).

    Returns the norm before clipping as a 0-d array; nothing is read back to the host.
    """
    max_norm = _number("max_norm", max_norm, 0.0, lo_open=True)
    arrays = list(grads.values())
    xp = array_namespace(*arrays)
    norms = xp.stack([xp.linalg.vector_norm(g) for g in arrays])       # (n_tensors,)
    total = xp.linalg.vector_norm(norms)                               # 0-d
    coef = xp.clip(max_norm / (total + 1e-6), max=1.0)
    for g in arrays:
        g *= coef
    return total


def cosine_lr(step: int, *, max_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warmup over `warmup` steps to max_lr, then a cosine down to min_lr at `total`;
    min_lr afterwards. `step` counts from 0."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    ratio = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)
