"""An implementation's table against the reference for one declared op, on inputs the op's
declaration draws: `check_spec(spec, table, rng, dtype)`. What the pairing tests run for
every op and implementation, and what a kernel author runs on a new op."""
from __future__ import annotations

import numpy as np

from ..opspec import OpSpec
from .budget import assert_close_budget
from .pairing import WIDER, cast_floats, check_kernel_pairings


def check_spec(spec: OpSpec, table: dict, rng: np.random.Generator, dtype, *, size=None):
    """Draw a size (spec.test_size) and inputs (spec.inputs) and budget-check table's entries
    of `spec`: a forward/backward op in all its pairings with the reference, an update op's
    updated arrays. Returns the size drawn (for the failure report)."""
    size = spec.test_size(rng) if size is None else size
    sample = spec.inputs(rng, size)
    if spec.update:
        _check_update(spec, table, sample, dtype)
    else:
        check_kernel_pairings(table, spec.forward_name, spec.backward_name, sample.args,
                              sample.dy, dtype, fwd_kw=sample.kwargs, name=spec.name,
                              bwd_cond=sample.bwd_cond, out_scale=sample.out_scale,
                              grad_scale=sample.grad_scale)
    return size


def _check_update(spec: OpSpec, table: dict, sample, dtype) -> None:
    """An in-place update: every array it changes, against the reference's in the same dtype
    and in a wider one (the exact answer)."""
    from ..dispatch import kernels

    reference = kernels("reference")[spec.forward_name]
    dtype = np.dtype(dtype)

    def run(fn, dt):
        args = [a.copy() if isinstance(a, np.ndarray) else a
                for a in cast_floats(sample.args, dt)]
        assert fn(*args, **sample.kwargs) is None          # in place
        return args

    exact = run(reference, WIDER[dtype])
    ref = run(reference, dtype)
    got = run(table[spec.forward_name], dtype)
    for i, (a, r, e) in enumerate(zip(got, ref, exact)):
        if isinstance(a, np.ndarray):
            assert a.dtype == dtype and a.shape == r.shape
            assert_close_budget(a, r, e, name=f"{spec.name} argument {i}")
