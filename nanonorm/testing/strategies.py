"""Hypothesis strategies for kernel tests: shapes with awkward sizes, bounded float arrays.

Arrays come from a drawn seed and a drawn "kind" rather than element by element, so large
arrays stay cheap; the kinds cover what breaks numerics: several magnitudes, a large common
offset (cancellation), constant rows, and outliers. Values stay bounded (no overflow by
construction) and never subnormal.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAGNITUDES = (1e-3, 1.0, 1e3)
KINDS = ("normal", "uniform", "offset", "constant_rows", "outliers")
# for finite differences, which lose to a large common offset what the forward loses
WELL_CONDITIONED = ("normal", "uniform", "constant_rows", "outliers")


def shapes(min_dims: int = 1, max_dims: int = 4, min_side: int = 1, max_side: int = 9):
    """Shapes including size-1 and odd sides."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def dtypes():
    return st.sampled_from([np.float32, np.float64])


@st.composite
def float_arrays(draw, shape, dtype=np.float64, *, magnitudes=MAGNITUDES, kinds=KINDS):
    """A float array of `shape` and `dtype` (either may be a strategy)."""
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else tuple(shape)
    dtype = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from(magnitudes))
    kind = draw(st.sampled_from(kinds))
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
    return x.astype(dtype)


@st.composite
def seeds(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
