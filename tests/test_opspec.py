"""Adding an op is one declaration: a toy op registered here gets the public functions,
dispatch to its Numba kernel, the pairing check and a bench row, with no other edit."""
import inspect
import types
from typing import NamedTuple

import numpy as np
import pytest
from numba import njit, prange

import nanonorm.functional as F
from nanonorm import opspec, use_impl
from nanonorm.bench import core
from nanonorm.dispatch import implementation_for, kernels
from nanonorm.testing import check_spec


class SquareCache(NamedTuple):
    x: object


def _module(name: str, **functions) -> types.ModuleType:
    module = types.ModuleType(name)
    vars(module).update(functions)
    return module


reference = _module(
    "toy_square",
    square_forward=lambda x: (x * x, SquareCache(x)),
    square_backward=lambda dy, cache: 2 * cache.x * dy)


@njit(parallel=True, cache=False)
def _square(x, out):
    for i in prange(x.shape[0]):
        out[i] = x[i] * x[i]


def _numba_forward(x):
    out = np.empty(x.size, x.dtype)
    _square(np.ascontiguousarray(x).reshape(-1), out)
    return out.reshape(x.shape), SquareCache(x)


def square_args(x) -> opspec.Call:
    """x², elementwise."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError("x must be a float array")
    return opspec.Call(x, (x,), {})


def square_grad_args(dy, cache: SquareCache) -> opspec.Call:
    return opspec.Call(dy, (dy, cache), {})


def inputs(rng, size):
    x = rng.standard_normal(size["shape"])
    return opspec.Sample((x,), {}, rng.standard_normal(size["shape"]))


def declaration(numba_module) -> opspec.OpSpec:
    return opspec.OpSpec(
        name="square", reference=reference, cache=(SquareCache,), check_forward=square_args,
        check_backward=square_grad_args, inputs=inputs,
        test_size=lambda rng: dict(shape=tuple(rng.integers(1, 9, rng.integers(1, 3)))),
        # read x, write y -> 2·N·4 bytes
        bench=(opspec.BenchCase("square_fwd", dict(shape=(1 << 20,)), dict(shape=(1000,)),
                                "GB/s", lambda s: 2 * int(np.prod(s["shape"])) * 4),),
        implementations={"numba": numba_module})


@pytest.fixture
def square():
    kernel = _module("toy_square_numba", square_forward=_numba_forward,
                     square_backward=reference.square_backward)
    spec = opspec.register(declaration(kernel))
    yield spec
    opspec.unregister("square")


def test_one_declaration_gives_functions_dispatch_tests_and_a_bench_row(square):
    x = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    # the public functions, with the declaration's signature and docstring
    np.testing.assert_array_equal(F.square(x), x * x)
    y, cache = F.square_forward(x)
    np.testing.assert_array_equal(F.square_backward(np.ones_like(x), cache), 2 * x)
    assert "square" in F.__all__ and F.square_forward.__doc__ == square_args.__doc__
    assert list(inspect.signature(F.square_forward).parameters) == ["x"]
    with pytest.raises(TypeError, match="float array"):
        F.square(np.arange(3))
    # dispatch: NumPy arrays run the Numba kernel, the reference on request
    assert implementation_for("square_forward", x) == "numba"
    assert kernels("numba")["square_forward"] is _numba_forward
    with use_impl("reference"):
        assert implementation_for("square_forward", x) == "reference"
    # the pairing check every op gets in test_pairings.py
    for seed in range(3):
        check_spec(square, kernels("numba"), np.random.default_rng(seed), np.float32)
    # a bench row, validated against the reference
    rows = core.run_grid(quick=True, only=["square"], repeats=1, progress=False,
                         providers=["reference", "numba"])["rows"]
    assert {(r["case"], r["provider"], r["validated"]) for r in rows} == {
        ("square_fwd", "reference", True), ("square_fwd", "numba", True)}


def test_the_pairing_check_catches_a_wrong_kernel():
    wrong = _module("toy_square_wrong", square_forward=lambda x: (x * x * 1.001, SquareCache(x)),
                    square_backward=reference.square_backward)
    spec = opspec.register(declaration(wrong))
    try:
        with pytest.raises(AssertionError):
            check_spec(spec, kernels("numba"), np.random.default_rng(0), np.float32)
    finally:
        opspec.unregister("square")


def test_a_kernel_module_missing_a_declared_entry_is_an_error_not_a_fallback():
    spec = opspec.register(declaration(_module("toy_square_half", square_forward=_numba_forward)))
    try:
        with pytest.raises(AttributeError, match="square_backward"):
            kernels("numba")
    finally:
        opspec.unregister("square")
    assert "square_forward" not in kernels("numba") and not hasattr(F, "square")


def test_an_op_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        opspec.register(opspec.spec_for("gelu_forward"))
