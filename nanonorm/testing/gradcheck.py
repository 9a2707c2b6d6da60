"""Central finite differences for any `(forward, backward)` pair, in float64."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..backend import array_namespace, is_numpy_array, to_numpy


def _scalar(xp, a) -> float:
    return float(to_numpy(xp.sum(a)))


def check_gradients(forward: Callable, backward: Callable, inputs: Sequence, *,
                    wrt: Sequence[int] | None = None, h: float = 1e-6, rtol: float = 1e-6,
                    atol: float = 1e-10, seed: int = 0) -> list[tuple[float, float]]:
    """Check backward against finite differences of forward, one random direction per input.

    `forward(*inputs) -> (out, cache)`; `backward(dout, cache)` returns one gradient or a tuple
    in the order of `inputs`. With L(x) = <forward(x), r> for a random r, each checked input i
    must satisfy |<grad_i, u> - (L(x + h·u) - L(x - h·u)) / 2h| <= atol + rtol · ‖grad_i‖ + the
    rounding error of the difference quotient (a few ulps of Σ|out·r|, divided by h), for a
    random unit direction u. Keep inputs well conditioned (no large common offset): the
    difference quotient loses what the forward loses. `wrt` defaults to every float64 array among the inputs (the check
    is only meaningful in float64). Returns the (analytic, numeric) pairs; raises AssertionError.
    """
    inputs = list(inputs)
    arrays = [i for i, a in enumerate(inputs) if hasattr(a, "dtype") and hasattr(a, "shape")]
    xp = array_namespace(*(inputs[i] for i in arrays))
    wrt = [i for i in arrays if inputs[i].dtype == xp.float64] if wrt is None else list(wrt)
    if not wrt:
        raise ValueError("check_gradients needs at least one float64 input to differentiate")
    rng = np.random.default_rng(seed)
    out, cache = forward(*inputs)
    like = lambda a, host: xp.asarray(host, dtype=xp.float64, device=getattr(a, "device", None))
    r = like(out, rng.standard_normal(tuple(out.shape)))
    grads = backward(r, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def loss(args) -> float:
        return _scalar(xp, forward(*args)[0] * r)

    roundoff = 16 * np.finfo(np.float64).eps * _scalar(xp, xp.abs(out * r))

    results = []
    for i in wrt:
        x = inputs[i]
        u_host = rng.standard_normal(tuple(x.shape))
        u_host /= max(np.linalg.norm(u_host), 1e-300)
        u = like(x, u_host)
        g = grads[i]
        if g is None:
            raise AssertionError(f"backward returned None for input {i}")
        analytic = _scalar(xp, g * u)
        hx = h
        plus, minus = list(inputs), list(inputs)
        plus[i], minus[i] = x + hx * u, x - hx * u
        numeric = (loss(plus) - loss(minus)) / (2 * hx)
        gnorm = float(np.linalg.norm(np.asarray(to_numpy(g), dtype=np.float64)))
        if not abs(analytic - numeric) <= atol + rtol * max(gnorm, abs(numeric)) + roundoff / hx:
            raise AssertionError(f"gradient of input {i}: analytic {analytic!r} vs finite "
                                 f"difference {numeric!r} (|grad| = {gnorm:.3e})")
        results.append((analytic, numeric))
    if is_numpy_array(out):  # backward must hand out fresh arrays, never a view of an input
        for i in wrt:
            if np.shares_memory(to_numpy(grads[i]), to_numpy(inputs[i])):
                raise AssertionError(f"gradient of input {i} shares memory with the input")
    return results
