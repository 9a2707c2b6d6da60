"""The array-module switch.

Every op takes its array module from its inputs (`xp = array_namespace(x, w)`), never from a
global: NumPy arrays stay on the CPU, CuPy arrays on their GPU, and the reference math runs
unchanged on both because it only calls the Array API standard. The few things the standard
lacks (scatter-add, seeded random numbers, copying to the host) are here, one small function
per backend.
"""
from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
from array_api_compat import (
    device as array_device,
    is_cupy_array,
    is_numpy_array,
    is_torch_array,
)

Array = Any  # any Array API array: numpy.ndarray, cupy.ndarray, array_api_strict.Array, ...

__all__ = [
    "Array", "array_namespace", "array_device", "is_numpy_array", "is_cupy_array",
    "backend_name", "on_host", "to_numpy", "scatter_add_rows", "normal", "get_namespace",
]


def array_namespace(*arrays: Array, names: tuple[str, ...] | None = None):
    """The Array API namespace shared by `arrays` (None entries are skipped).

    Raises TypeError naming the arguments when arrays from different libraries are mixed,
    or when an argument is not an array at all.
    """
    present = [(i, a) for i, a in enumerate(arrays) if a is not None]
    labels = names or tuple(f"argument {i}" for i in range(len(arrays)))
    for i, a in present:
        if not array_api_compat.is_array_api_obj(a):
            raise TypeError(f"{labels[i]} must be an array, got {type(a).__name__}")
    try:
        return array_api_compat.array_namespace(*(a for _, a in present))
    except TypeError:
        kinds = ", ".join(f"{labels[i]}: {type(a).__module__}.{type(a).__name__}"
                          for i, a in present)
        raise TypeError(f"arrays from different array libraries cannot be mixed in one call "
                        f"({kinds})") from None


def get_namespace(name: str):
    """The namespace for a backend name: 'numpy', 'cupy' or 'array_api_strict'."""
    if name == "numpy":
        return array_api_compat.array_namespace(np.empty(0))
    if name == "cupy":
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise RuntimeError("device='cuda' needs CuPy and an NVIDIA GPU: "
                               "pip install 'nanonorm[gpu]'") from e
        return array_api_compat.array_namespace(cupy.empty(0))
    if name == "array_api_strict":
        import array_api_strict
        return array_api_strict
    raise ValueError(f"backend must be 'numpy', 'cupy' or 'array_api_strict', got {name!r}")


def backend_name(x: Array) -> str:
    if is_numpy_array(x):
        return "numpy"
    if is_cupy_array(x):
        return "cupy"
    if is_torch_array(x):
        return "torch"
    return type(x).__module__.split(".")[0]


def on_host(x: Array) -> bool:
    """Whether reading x's values costs no device sync: NumPy, torch on the CPU,
    array_api_strict's CPU device (its other devices stand in for a GPU in tests)."""
    if is_numpy_array(x):
        return True
    if is_cupy_array(x):
        return False
    if is_torch_array(x):
        return x.device.type == "cpu"
    return "CPU" in str(array_device(x)).upper()


def to_numpy(x: Array) -> np.ndarray:
    """A host NumPy copy (or view, for NumPy input) of any supported array."""
    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.from_dlpack(x)


def scatter_add_rows(out: Array, idx: Array, rows: Array) -> Array:
    """out[idx[i], :] += rows[i, :] for every i, repeated indices accumulating.

    out (V, C), idx (N,) integer, rows (N, C). Modifies and returns `out`.
    """
    if is_numpy_array(out):
        np.add.at(out, idx, rows)
        return out
    if is_cupy_array(out):
        import cupyx
        cupyx.scatter_add(out, idx, rows)
        return out
    if is_torch_array(out):
        out.index_add_(0, idx, rows)
        return out
    # Standard-only fallback (array_api_strict): a one-hot matmul, fine for test sizes.
    xp = array_namespace(out)
    onehot = xp.astype(idx[:, None] == xp.arange(out.shape[0], device=array_device(out))[None, :],
                       out.dtype)                                         # (N, V)
    return out + xp.matrix_transpose(onehot) @ rows                       # (V, C)


def normal(shape: tuple[int, ...], std: float, *, rng: np.random.Generator, like_xp,
           dtype, device=None) -> Array:
    """N(0, std²) samples drawn on the host, so a seed gives the same numbers on every backend."""
    host = rng.standard_normal(shape, dtype=np.float64) * std
    return like_xp.asarray(host.astype(numpy_dtype(dtype)), device=device)


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype for a NumPy/CuPy dtype, a name ("float32") or another library's dtype."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])
