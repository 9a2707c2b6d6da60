"""Random float arrays of the kinds that break numerics, from a NumPy Generator (no
Hypothesis needed: the op declarations draw their inputs with it, and so does the bench).

Kinds: "normal", "uniform", "offset" (a large common offset: cancellation), "constant_rows"
(every row one value), "outliers" (one element in 16 a hundred times larger). Values stay
bounded (no overflow by construction) and never subnormal.
"""
from __future__ import annotations

import numpy as np

MAGNITUDES = (1e-3, 1.0, 1e3)
KINDS = ("normal", "uniform", "offset", "constant_rows", "outliers")
# for finite differences, which lose to a large common offset what the forward loses
WELL_CONDITIONED = ("normal", "uniform", "constant_rows", "outliers")


def random_floats(rng: np.random.Generator, shape, *, scale: float = 1.0,
                  kind: str = "normal") -> np.ndarray:
    """A float64 array of `shape`: `kind` (see above) at magnitude `scale`."""
    shape = tuple(shape)
    if kind == "uniform":
        x = rng.uniform(-scale, scale, shape)
    else:
        x = rng.standard_normal(shape) * scale
    if kind == "offset":  # mean far from zero relative to the spread
        x = x + scale * 1e3
    elif kind == "constant_rows" and len(shape) >= 1 and shape[-1] > 0:
        x = np.broadcast_to(x[..., :1], shape).copy()
    elif kind == "outliers" and x.size:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, max(1, flat.size // 16))] *= 100.0
    return x


def awkward_shape(rng: np.random.Generator, min_dims: int = 1, max_dims: int = 3,
                  max_side: int = 9) -> tuple[int, ...]:
    """A small shape with size-1 and odd sides."""
    return tuple(int(n) for n in rng.integers(1, max_side + 1,
                                               rng.integers(min_dims, max_dims + 1)))
