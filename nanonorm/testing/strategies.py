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

from .arrays import KINDS, MAGNITUDES, WELL_CONDITIONED, random_floats

__all__ = ["KINDS", "MAGNITUDES", "WELL_CONDITIONED", "dtypes", "float_arrays", "seeds",
           "shapes"]


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
    return random_floats(rng, shape, scale=scale, kind=kind).astype(dtype)


@st.composite
def seeds(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
