"""Argument checks for the public boundary: each names the argument and what was expected."""
from __future__ import annotations

import math
import numbers

from . import device_checks
from .backend import Array, array_namespace, backend_name, on_host, to_numpy


def namespace(**arrays: Array | None):
    """The shared array namespace of the named arguments (None skipped); TypeError on mixing."""
    names = tuple(arrays)
    return array_namespace(*arrays.values(), names=names)


def floating(xp, name: str, x: Array) -> None:
    """float32 or float64: what every implementation computes in and returns. float16,
    bfloat16, long double and the like are refused, not computed in another precision."""
    if x.dtype in (xp.float32, xp.float64):
        return
    if xp.isdtype(x.dtype, "real floating") or "float" in str(x.dtype):
        raise TypeError(f"{name} has dtype {x.dtype}, which nanonorm does not support: only "
                        f"float32 and float64 arrays are (cast it, e.g. to float32, first)")
    raise TypeError(f"{name} must be a real floating-point array (float32 or float64), "
                    f"got dtype {x.dtype}")


def integer(xp, name: str, x: Array) -> None:
    if not xp.isdtype(x.dtype, "integral"):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")


def same_dtype(name: str, x: Array, ref_name: str, ref: Array) -> None:
    if x.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but {ref_name} has dtype {ref.dtype}; "
                        f"they must match")


def shape(name: str, x: Array, expected: tuple, what: str = "") -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}{what}, got {tuple(x.shape)}")


def min_ndim(name: str, x: Array, n: int, layout: str) -> None:
    if x.ndim < n:
        raise ValueError(f"{name} must have at least {n} dims {layout}, got shape {tuple(x.shape)}")


def real_number(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number, "
                         f"got {value}")
    return value


def axis(name: str, value, ndim: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not -ndim <= value < ndim:
        raise ValueError(f"{name}={value} is out of range for an array with {ndim} dims "
                         f"(expected {-ndim} <= {name} < {ndim})")
    return int(value) % ndim - ndim   # negative form: stays right when leading dims broadcast


def index_range(xp, name: str, idx: Array, upper: int, what: str) -> None:
    """0 <= idx < upper everywhere. Host arrays are checked now; device arrays on the device,
    raising at the next natural sync point (nanonorm.device_checks: no host sync here)."""
    if not idx.size or device_checks.is_trusted():
        return
    def message() -> str:
        return (f"{name} must lie in [0, {upper}) ({what}), got values in "
                f"[{int(xp.min(idx))}, {int(xp.max(idx))}]")
    bad = xp.any((idx < 0) | (idx >= upper))                       # 0-d, one pass
    if on_host(idx) or device_checks.is_immediate():
        if bool(bad):
            raise ValueError(message())
    else:
        device_checks.defer(bad, message)


def cache_type(name: str, cache, expected: type) -> None:
    if not isinstance(cache, expected):
        raise TypeError(f"{name} must be the {expected.__name__} returned by the forward, "
                        f"got {type(cache).__name__}")


def gradient(name: str, dy: Array, like: Array, like_name: str) -> None:
    """dy is an array of the forward output's library, dtype and shape."""
    xp = array_namespace(dy, like, names=(name, like_name))
    floating(xp, name, dy)
    same_dtype(name, dy, like_name, like)


# plain Python values (options, hyperparameters) ----------------------------------------------
# bool is an int to Python, never to a caller: True passes for no count, size or rate here.

def is_integer(value) -> bool:
    """An integral number of any type (int, numpy.int64, ...), bool excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def scalar_gradient(name: str, value, like: Array, like_name: str) -> None:
    """The upstream gradient of a scalar: a real number, or a 0-d array of like's library and
    dtype."""
    if not is_real(value):
        gradient(name, value, like, like_name)
        shape(name, value, (), " (a scalar)")


def is_real(value) -> bool:
    """A real number of any type (int, float, numpy.float32, ...), bool excluded; NaN and inf
    included (ranges are each caller's to check)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer_number(name: str, value, *, low: int | None = None) -> int:
    """`value` as an int: TypeError for another type, ValueError when below `low`."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def boolean(name: str, value) -> bool:
    """True or False itself: TypeError for anything else (1, "yes", numpy.bool_)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {short_repr(value)}")
    return value


def short_repr(value, limit: int = 40) -> str:
    """repr(value), cut to `limit` characters: error messages stay short whatever the input."""
    if isinstance(value, int) and not -10**limit < value < 10**limit:
        return f"an integer of {value.bit_length():,} bits"   # repr may even refuse it
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def like_target(what: str, value, target: Array):
    """A value loaded for `target` (a state dict's tensor): an array of target's shape, brought
    to the host when it comes from another array library. TypeError / ValueError naming
    `what`; the caller converts dtype and device."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{what} must be an array, got {type(value).__name__}")
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(f"{what} has shape {tuple(value.shape)}, expected "
                         f"{tuple(target.shape)}")
    return to_numpy(value) if backend_name(value) != backend_name(target) else value
