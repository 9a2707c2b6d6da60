"""AdamW (torch.optim.AdamW's semantics), gradient clipping by global norm, warmup + cosine LR.

Parameters and gradients are dicts name → array (what `GPT.parameters()` / `GPT.backward()`
give); the optimiser updates the parameter arrays in place, so the model sees the new values
without any copy. The per-tensor math is `nanonorm.ops.adamw.adamw_step`, reached through
dispatch so a fused kernel can take its place.
"""
from __future__ import annotations

import math

from . import device_checks
from . import validate as check
from .backend import Array, array_device, array_namespace, backend_name
from .dispatch import resolve

__all__ = ["AdamW", "clip_grad_norm", "cosine_lr"]


def _number(name: str, value, lo: float, hi: float = math.inf, *, lo_open=False) -> float:
    """A finite float in [lo, hi) ((lo, hi) when lo_open); NaN and inf never pass."""
    if not check.is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (lo < value if lo_open else lo <= value) or not value < hi:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}), got {value}")
    return value


def _betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return (_number("betas[0]", betas[0], 0.0, 1.0), _number("betas[1]", betas[1], 0.0, 1.0))


class AdamW:
    """AdamW over a dict of arrays. `no_decay`: names that get no weight decay (biases, norms).

    `lr` may be changed between steps (e.g. `opt.lr = cosine_lr(step, ...)`); like every
    hyperparameter it must be finite and non-negative. `step` and `load_state_dict` check all
    their input before they change anything.
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, *, no_decay=()):
        if not isinstance(params, dict) or not params:
            raise TypeError("params must be a non-empty dict of name -> array")
        self.params = params                    # the live dict: updated in place
        self.lr = lr
        self.betas = _betas(betas)
        self.eps = _number("eps", eps, 0.0, lo_open=True)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)
        self.no_decay = self._no_decay(no_decay)
        xp = array_namespace(*params.values(), names=tuple(params))
        self.m = {n: xp.zeros_like(p) for n, p in params.items()}   # first moments
        self.v = {n: xp.zeros_like(p) for n, p in params.items()}   # second moments
        self.steps = {n: 0 for n in params}     # per tensor, as torch counts them

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _number("lr", value, 0.0)

    def _no_decay(self, names) -> frozenset:
        if isinstance(names, str) or not isinstance(names, (set, frozenset, list, tuple)):
            raise TypeError(f"no_decay must be a collection of parameter names, got "
                            f"{type(names).__name__}")
        names = frozenset(names)
        if not names <= self.params.keys():
            raise ValueError(f"no_decay names not in params: "
                             f"{sorted(map(str, names - self.params.keys()))}")
        return names

    def step(self, grads: dict) -> None:
        """One update of every parameter named in `grads` (the others are left alone).

        Every gradient is checked (name, array type, dtype, shape) before any parameter or
        step counter changes."""
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of name -> array, got {type(grads).__name__}")
        unknown = grads.keys() - self.params.keys()
        if unknown:
            raise ValueError(f"gradients for unknown parameters: {sorted(map(str, unknown))}")
        for name, g in grads.items():
            self._check_like(f"gradient {name!r}", g, self.params[name], "its parameter")
        device_checks.check_pending()   # ids checked on the device: raise before any update
        beta1, beta2 = self.betas
        for name, g in grads.items():
            p = self.params[name]
            self.steps[name] += 1
            wd = 0.0 if name in self.no_decay else self.weight_decay
            resolve("adamw_step", p)(p, g, self.m[name], self.v[name], lr=self.lr, beta1=beta1,
                                     beta2=beta2, eps=self.eps, weight_decay=wd,
                                     step=self.steps[name])

    @staticmethod
    def _check_like(what: str, x, target, target_what: str) -> None:
        """x must be an array of target's library, dtype and shape."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"{what} must be an array, got {type(x).__name__}")
        if backend_name(x) != backend_name(target):
            raise TypeError(f"{what} is a {backend_name(x)} array but {target_what} is a "
                            f"{backend_name(target)} array")
        if x.dtype != target.dtype:
            raise TypeError(f"{what} has dtype {x.dtype} but {target_what} has dtype "
                            f"{target.dtype}")
        if tuple(x.shape) != tuple(target.shape):
            raise ValueError(f"{what} has shape {tuple(x.shape)}, {target_what} "
                             f"{tuple(target.shape)}")

    def state_dict(self) -> dict:
        """Everything a resumed run needs: the moments (the arrays themselves), step counts and
        hyperparameters."""
        return {"m": dict(self.m), "v": dict(self.v), "steps": dict(self.steps),
                "lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay, "no_decay": sorted(self.no_decay)}

    _STATE_KEYS = frozenset({"m", "v", "steps", "lr", "betas", "eps", "weight_decay",
                             "no_decay"})

    def load_state_dict(self, state: dict) -> None:
        """Restore a state_dict(). Everything is checked first (keys, the moments' names,
        shapes and values, step counts, hyperparameters); a bad state changes nothing.
        Hyperparameters absent from `state` keep their current values."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        unknown = state.keys() - self._STATE_KEYS
        if unknown:
            raise ValueError(f"optimizer state has unknown keys {sorted(map(str, unknown))}")
        for key in ("m", "v", "steps"):
            if not isinstance(state.get(key), dict) or set(state[key]) != set(self.params):
                raise ValueError(f"optimizer state {key!r} must be a dict naming exactly the "
                                 f"parameters")
        steps = {n: check.integer_number(f"optimizer state steps[{n!r}]", s, low=0)
                 for n, s in state["steps"].items()}
        lr = _number("lr", state.get("lr", self.lr), 0.0)
        betas = _betas(state.get("betas", self.betas))
        eps = _number("eps", state.get("eps", self.eps), 0.0, lo_open=True)
        weight_decay = _number("weight_decay", state.get("weight_decay", self.weight_decay), 0.0)
        no_decay = self._no_decay(state.get("no_decay", self.no_decay))
        staged = {key: {n: self._staged(key, n, a) for n, a in state[key].items()}
                  for key in ("m", "v")}
        for key, arrays in staged.items():
            for name, value in arrays.items():
                getattr(self, key)[name][...] = value
        self.steps, self._lr, self.betas, self.eps = steps, lr, betas, eps
        self.weight_decay, self.no_decay = weight_decay, no_decay

    def _staged(self, key: str, name: str, value):
        """A moment converted to its target's library, dtype and device; finite (v >= 0)."""
        what, target = f"optimizer state {key}[{name!r}]", getattr(self, key)[name]
        value = check.like_target(what, value, target)
        if getattr(value.dtype, "kind", None) != "f":        # NumPy / CuPy dtypes
            raise TypeError(f"{what} must be a floating-point array, got dtype {value.dtype}")
        xp = array_namespace(target)
        value = xp.asarray(value, dtype=target.dtype, device=array_device(target))
        finite = xp.all(xp.isfinite(value))
        if not bool(finite if key == "m" else finite & xp.all(value >= 0)):
            raise ValueError(f"{what} holds values that are not finite"
                             f"{'' if key == 'm' else ' and non-negative'}")
        return value


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
    min_lr afterwards. `step` counts from 0. Rates must be finite with 0 <= min_lr <= max_lr,
    and 0 <= warmup <= total."""
    step = check.integer_number("step", step, low=0)
    total = check.integer_number("total", total, low=1)
    warmup = check.integer_number("warmup", warmup, low=0)
    if warmup > total:
        raise ValueError(f"warmup ({warmup}) must not exceed total ({total})")
    max_lr = _number("max_lr", max_lr, 0.0)
    min_lr = _number("min_lr", min_lr, 0.0)
    if min_lr > max_lr:
        raise ValueError(f"min_lr ({min_lr}) must not exceed max_lr ({max_lr})")
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    ratio = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)
