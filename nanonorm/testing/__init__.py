"""A test kit for kernel authors, used by nanonorm's own suite.

- `check_gradients(forward, backward, inputs)`: a `(forward, backward)` pair against central
  finite differences in float64, along one random direction per input.
- `assert_close_budget(actual, approx, exact)`: an implementation's error against a float64
  result may be at most a small multiple of the reference's own error in the same dtype.
- `check_kernel_pairings(kernels, fwd, bwd, args, dy, dtype)`: a kernel table's forward and
  its three forward/backward pairings with the reference, under that budget;
  `check_adamw_kernel(kernels, shape, dtype)` the same for a fused in-place AdamW step.
- `check_spec(spec, table, rng, dtype)`: the same for one declared op (`nanonorm.opspec`), on
  inputs its declaration draws: what the suite's pairing tests run for every op.
- `nanonorm.testing.strategies`: Hypothesis strategies for shapes and bounded float arrays
  (needs the `test` extra).
"""
from .budget import assert_close_budget, max_abs_error
from .gradcheck import check_gradients
from .pairing import WIDER, cast_floats, check_adamw_kernel, check_kernel_pairings, result_arrays
from .spec_check import check_spec

__all__ = ["WIDER", "assert_close_budget", "cast_floats", "check_adamw_kernel",
           "check_gradients", "check_kernel_pairings", "check_spec", "max_abs_error",
           "result_arrays"]
