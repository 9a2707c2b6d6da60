"""Every declared op on every implementation that provides it, against the reference: the
forward and all four forward/backward pairings (an update op: its updated arrays) under the
error budget, on inputs the op's declaration draws (awkward sizes, several magnitudes, large
offsets, constant rows, outliers; float32 and float64).

The pairs come from the declarations (`nanonorm/specs/`) and the dispatch tables derived from
them: a new op or kernel is tested here with no edit. The CUDA kernels run on numba-cuda's
simulator where there is no GPU (a few examples: each GPU thread is a Python thread).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nanonorm import opspec
from nanonorm.dispatch import kernels
from nanonorm.testing import check_spec
from nanonorm.testing.strategies import dtypes


def _pairs(impl: str):
    return [pytest.param(spec, id=spec.name) for spec in opspec.specs()
            if spec.forward_name in kernels(impl)]


def _check(spec, impl, data):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    dtype = data.draw(dtypes(), label="dtype")
    size = check_spec(spec, kernels(impl), np.random.default_rng(seed), dtype)
    data.draw(st.just(size), label="size")          # shown with a failing example


@pytest.mark.parametrize("spec", _pairs("numba"))
@given(data=st.data())
def test_numba_agrees_with_the_reference(spec, data):
    _check(spec, "numba", data)


@settings(max_examples=2)     # the simulator runs ~1 ms per GPU thread per launch
@pytest.mark.parametrize("spec", _pairs("cuda"))
@given(data=st.data())
def test_cuda_agrees_with_the_reference(spec, data):
    from numba import cuda
    if not cuda.config.ENABLE_CUDASIM:
        pytest.skip("a GPU is present: tests/test_cupy_end_to_end.py runs the CUDA kernels")
    _check(spec, "cuda", data)


def test_every_fast_implementation_is_tested_here():
    # every op but embedding (a scatter-add) has a Numba kernel (linear: BLAS blocks on
    # nanonorm's threads); the CUDA kernels leave linear to cuBLAS too
    ops = {s.name for s in opspec.specs()}
    assert {p.values[0].name for p in _pairs("numba")} == ops - {"embedding"}
    assert {p.values[0].name for p in _pairs("cuda")} == ops - {"embedding", "linear"}
