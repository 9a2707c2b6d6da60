"""The float32 matmul precision policy: full float32, TF32 or bfloat16 operands.

torch's `set_float32_matmul_precision` names, with torch's meaning: the matmuls of float32
arrays in `linear` (every projection, the MLP and the tied head: ~80% of GPT-2 small's FLOPs at
T=1024) may round their operands before multiplying, accumulating in float32 as always:
  "highest"  float32 operands (the default)
  "high"     TF32 operands: 10 explicit mantissa bits (Ampere and later tensor cores)
  "medium"   bfloat16 operands: 7 explicit mantissa bits (tensor cores at twice TF32's rate)
Weights stay float32 (the master copy), and so do activations, LayerNorm, softmax, the loss and
the optimizer: only the matmul operands lose bits. float64 matmuls are never affected.

On CuPy the mode sets cuBLAS's compute type for float32 (TF32 or BF16 tensor-core math, set
process-wide as torch's setting is), so the GPU does the rounding at full speed. Elsewhere
(NumPy, and any host library) the operands are rounded here, to nearest even, before an
ordinary float32 matmul: the same numbers a tensor core multiplies, so the policy's effect on
training can be studied and tested on a CPU (at the cost of a copy of each operand). Attention's
own products stay float32 (its CUDA kernel uses no tensor cores).

The mode comes from `set_float32_matmul_precision`, the `float32_matmul_precision` context
manager, or NANONORM_MATMUL_PRECISION at import.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import numpy as np

from .backend import Array, array_device, array_namespace, is_cupy_array, is_numpy_array, \
    to_numpy

__all__ = ["MODES", "float32_matmul_precision", "get_float32_matmul_precision",
           "matmul_operands", "round_mantissa", "set_float32_matmul_precision"]

MODES = ("highest", "high", "medium")
ENV_VAR = "NANONORM_MATMUL_PRECISION"
MANTISSA_BITS = {"high": 10, "medium": 7}           # explicit bits kept (float32 has 23)
_CUPY_COMPUTE = {"highest": "COMPUTE_TYPE_DEFAULT", "high": "COMPUTE_TYPE_TF32",
                 "medium": "COMPUTE_TYPE_BF16"}


def _checked(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"float32 matmul precision must be one of {MODES}, got {mode!r}")
    return mode


_mode = _checked(os.environ.get(ENV_VAR, "highest"))


def get_float32_matmul_precision() -> str:
    return _mode


def set_float32_matmul_precision(mode: str) -> None:
    """Set the policy for every later float32 matmul of nanonorm (and of CuPy, process-wide)."""
    global _mode
    _mode = _checked(mode)
    _set_cupy(_mode)


@contextlib.contextmanager
def float32_matmul_precision(mode: str) -> Iterator[None]:
    """The policy inside the block only."""
    before = get_float32_matmul_precision()
    set_float32_matmul_precision(mode)
    try:
        yield
    finally:
        set_float32_matmul_precision(before)


_cupy_mode: str | None = None      # the mode CuPy's compute type was last set to


def _set_cupy(mode: str) -> None:
    global _cupy_mode
    cupy = sys.modules.get("cupy")            # not imported: no CuPy array exists yet
    if cupy is not None and _cupy_mode != mode:
        from cupy._core import _routines_linalg as linalg
        cupy._core.set_compute_type(np.float32, getattr(linalg, _CUPY_COMPUTE[mode]))
        _cupy_mode = mode


def matmul_operands(*arrays: Array | None) -> tuple:
    """The arrays as the policy multiplies them: float32 host arrays rounded (copies, same
    layout), everything else (float64, CuPy, None) unchanged."""
    if _mode == "highest":
        return arrays
    _set_cupy(_mode)           # CuPy imported after the mode was set learns it here, once
    bits = MANTISSA_BITS[_mode]
    return tuple(a if a is None or is_cupy_array(a) or str(a.dtype) != "float32"
                 else round_mantissa(a, bits) for a in arrays)


def round_mantissa(x: Array, bits: int) -> Array:
    """float32 x with `bits` explicit mantissa bits, rounded to nearest even (as a tensor core
    reads TF32 or a float32 -> bfloat16 conversion rounds); inf and NaN stay as they are, a
    value past the narrower type's largest rounds to inf."""
    host = to_numpy(x)
    out = np.empty_like(host)                     # keeps the layout (a transposed view's too)
    u = host.view(np.uint32)
    drop = np.uint32(23 - bits)
    lsb = (u >> drop) & np.uint32(1)              # ties go to the even neighbour
    rounded = (u + (np.uint32(1) << (drop - np.uint32(1))) - np.uint32(1) + lsb) \
        & ~((np.uint32(1) << drop) - np.uint32(1))
    np.copyto(out.view(np.uint32), np.where(np.isfinite(host), rounded, u))
    if is_numpy_array(x):
        return out
    return array_namespace(x).asarray(out, device=array_device(x))
