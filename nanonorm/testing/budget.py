"""Error-budget closeness: tolerances that follow the dtype instead of hand-tuned constants."""
from __future__ import annotations

import numpy as np

from ..backend import to_numpy


def max_abs_error(a, exact, *, floor: float = 0.0) -> float:
    """max |a - exact| over finite entries, in float64 (nonfinite entries must match exactly).

    Entries whose exact value lies below `floor` (the dtype's smallest normal number, in
    assert_close_budget) count only what they are off beyond it: a result that is subnormal in
    the dtype may come out flushed to 0, or as any subnormal, without that being an error."""
    a = np.asarray(to_numpy(a), dtype=np.float64)
    e = np.asarray(to_numpy(exact), dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape {a.shape} != expected {e.shape}")
    finite = np.isfinite(e)
    if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], e[~finite]):
        raise AssertionError("non-finite entries (inf, -inf, nan) differ from the expected ones")
    err = np.abs(a[finite] - e[finite])
    if floor:
        err = np.where(np.abs(e[finite]) < floor, np.maximum(err - floor, 0.0), err)
    return float(np.max(err, initial=0.0))


def assert_close_budget(actual, approx, exact, *, factor: float = 4.0, ulps: float = 8.0,
                        scale: float | None = None, name: str = "result") -> float:
    """Assert err(actual) <= factor · err(approx) + ulps · eps(dtype) · scale.

    `exact` is the float64 answer, `approx` the reference implementation run in the same dtype
    as `actual`: a kernel may lose at most `factor` times the accuracy the reference itself
    loses in that dtype. The ulps term covers inputs where the reference happens to be exact;
    `scale` is the magnitude the computation rounds at, max|exact| by default. Pass the
    larger magnitude of the terms when the result is a cancellation of them (a LayerNorm dx,
    a log-probability of large logits), where one rounding of a term dwarfs the result.
    An entry whose exact value is below the dtype's smallest normal number may be off by up
    to that number (a subnormal flushed to 0 passes), without loosening any other entry.
    Returns the measured error of `actual`.
    """
    dtype = np.dtype(str(to_numpy(actual).dtype))
    eps = float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0
    tiny = float(np.finfo(dtype).tiny) if dtype.kind == "f" else 0.0
    err = max_abs_error(actual, exact, floor=tiny)
    budget_ref = max_abs_error(approx, exact, floor=tiny)
    if scale is None:
        e = np.asarray(to_numpy(exact), dtype=np.float64)
        scale = float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0))
    budget = factor * budget_ref + ulps * eps * scale
    if not err <= budget:
        raise AssertionError(f"{name}: error {err:.3e} exceeds the budget {budget:.3e} "
                             f"({factor} x reference error {budget_ref:.3e} + {ulps} ulps of "
                             f"{scale:.3e} in {dtype})")
    return err
