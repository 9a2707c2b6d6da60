"""A test kit for kernel authors, used by nanonorm's own suite.

- `check_gradients(forward, backward, inputs)`: a `(forward, backward)` pair against central
  finite differences in float64, along one random direction per input.
- `assert_close_budget(actual, approx, exact)`: an implementation's error against a float64
  result may be at most a small multiple of the reference's own error in the same dtype.
- `nanonorm.testing.strategies`: Hypothesis strategies for shapes and bounded float arrays
  (needs the `test` extra).
"""
from .budget import assert_close_budget, max_abs_error
from .gradcheck import check_gradients

__all__ = ["assert_close_budget", "check_gradients", "max_abs_error"]
