"""The array libraries every reference test body runs on.

NumPy is what users run; array_api_strict fails on any call outside the Array API standard,
which is how CI (no GPU) proves the reference math will also run on CuPy.
"""
from __future__ import annotations

import numpy as np
import pytest

from nanonorm.backend import get_namespace, to_numpy

LIBS = ("numpy", "array_api_strict")
libs = pytest.mark.parametrize("lib", LIBS)


def put(lib: str, *arrays):
    """Host arrays -> arrays of `lib` (None passes through)."""
    xp = get_namespace(lib)
    out = tuple(None if a is None else xp.asarray(a) for a in arrays)
    return out if len(out) > 1 else out[0]


def host(a) -> np.ndarray:
    return None if a is None else np.asarray(to_numpy(a))


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)
