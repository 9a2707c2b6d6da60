"""Chooses, per op and per array type, which implementation runs: reference, numba or cuda.

The tables come from the op declarations (`nanonorm.opspec`): an implementation provides an op
when its package holds a module of the reference module's name (`nanonorm/kernels/cpu/
layernorm.py` beside `nanonorm/ops/layernorm.py`) or the declaration names one; that module
must then define every entry of the op, with the reference's signature and cache type, so any
forward pairs with any backward. NumPy arrays prefer the Numba kernels, CuPy arrays the CUDA
kernels; anything else (array_api_strict, torch) runs the reference. `use_impl(name)` or the
environment variable NANONORM_IMPL forces one implementation for the ops it provides; the
others stay on the reference.

A fast implementation that cannot be loaded (Numba missing or broken, no numba-cuda) is never
skipped silently: the first dispatch that falls back warns once with the cause, and
`unavailable()` (shown by `nanonorm info`) says why.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import warnings
from typing import Callable, Iterator

from . import opspec
from .backend import Array, backend_name

IMPLEMENTATIONS = ("reference", "numba", "cuda")
ENV_VAR = "NANONORM_IMPL"

# the package holding each fast implementation's modules
_PACKAGES = {"numba": "nanonorm.kernels.cpu", "cuda": "nanonorm.kernels.cuda"}
# which array libraries an implementation can run on
_SUPPORTS = {"reference": None, "numba": {"numpy"}, "cuda": {"cupy"}}
_PREFERRED = {"numpy": ("numba", "reference"), "cupy": ("cuda", "reference")}

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("nanonorm_impl", default=None)
# what falling back costs, in the warning: the reference is plain NumPy / CuPy array code
_FALLBACK_COST = {"numba": "NumPy arrays run the reference ops instead, several times slower "
                           "(3-13x per op in docs/benchmarks.md)",
                  "cuda": "CuPy arrays run the reference ops instead (unfused CuPy code)"}
_tables: dict[str, dict[str, Callable]] = {}
_failures: dict[str, str] = {}      # implementation -> why it could not be loaded
_warned: set[str] = set()


class FallbackWarning(UserWarning):
    """A fast implementation could not be loaded, so a slower one runs in its place."""


def _check_name(name: str) -> str:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {name!r}")
    return name


@contextlib.contextmanager
def use_impl(name: str) -> Iterator[None]:
    """Force one implementation inside the block (ops it lacks stay on the reference)."""
    token = _forced.set(_check_name(name))
    try:
        yield
    finally:
        _forced.reset(token)


def forced_impl() -> str | None:
    name = _forced.get() or os.environ.get(ENV_VAR) or None
    return None if name is None else _check_name(name)


def kernels(impl: str) -> dict[str, Callable]:
    """The op table of one implementation; empty when it cannot be loaded here (the reason is
    in `unavailable()`)."""
    if impl not in _tables:
        try:
            _tables[impl] = _table(_check_name(impl))
        except Exception as e:   # ImportError, or a broken install failing some other way
            if impl == "reference" or isinstance(e, _Undeclared):
                raise
            _failures[impl] = f"{_PACKAGES[impl]} could not be imported: {type(e).__name__}: {e}"
            _tables[impl] = {}
    return _tables[impl]


class _Undeclared(AttributeError):
    """A kernel module lacks a function its op declares: a bug, never a silent fallback."""


def _table(impl: str) -> dict[str, Callable]:
    table = {}
    if impl != "reference":
        importlib.import_module(_PACKAGES[impl])     # Numba / numba-cuda load here, or fail
    for spec in opspec.specs():
        module = _module(spec, impl)
        if module is None:
            continue
        for entry in spec.entries:
            if not hasattr(module, entry):
                raise _Undeclared(f"{module.__name__} implements op {spec.name!r} but has no "
                                  f"{entry}")
            table[entry] = getattr(module, entry)
    return table


def _module(spec, impl: str):
    """The module implementing `spec` for `impl`, or None where it has none."""
    if impl == "reference":
        return spec.reference
    if impl in spec.implementations:
        return spec.implementations[impl]
    name = f"{_PACKAGES[impl]}.{spec.module}"
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


def _forget_tables(spec) -> None:
    _tables.clear()          # an op was declared or removed: rebuild on the next dispatch


opspec.on_change(_forget_tables)


def table_attribute(impl: str, module: str, name: str):
    """A kernel package's `KERNELS` (its table, from the op declarations) or one kernel by its
    entry name, e.g. `nanonorm.kernels.cpu.gelu_forward`: the package's module __getattr__."""
    if not name.startswith("_"):          # (the import system asks for submodules this way)
        table = kernels(impl)
        if name == "KERNELS":
            return table
        if name in table:
            return table[name]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def unavailable() -> dict[str, str]:
    """Implementation -> why it cannot run here, for those that failed to load so far
    (loading all of them first)."""
    for impl in IMPLEMENTATIONS:
        if impl != "cuda" or _cuda_wanted():
            kernels(impl)
    return dict(_failures)


def _cuda_wanted() -> bool:
    """Whether CuPy is importable: without it no CuPy array exists to run the CUDA kernels."""
    return importlib.util.find_spec("cupy") is not None


def _warn_fallback(impl: str) -> None:
    if impl in _warned:
        return
    _warned.add(impl)
    warnings.warn(f"nanonorm: the {impl} kernels are unavailable ({_failures[impl]}); "
                  f"{_FALLBACK_COST[impl]}. `nanonorm info` shows what each op runs.",
                  FallbackWarning, stacklevel=4)


@contextlib.contextmanager
def cuda_kernels_on_numpy() -> Iterator[None]:
    """NumPy arrays dispatch to the CUDA kernels inside the block. Under numba-cuda's simulator
    (NUMBA_ENABLE_CUDASIM=1) those kernels run on NumPy arrays: this takes whole models
    through them without a GPU (the tests, the GPU check script's dry run)."""
    saved = _SUPPORTS["cuda"], _PREFERRED["numpy"]
    _SUPPORTS["cuda"], _PREFERRED["numpy"] = {"numpy"}, ("cuda", "reference")
    try:
        yield
    finally:
        _SUPPORTS["cuda"], _PREFERRED["numpy"] = saved


def implementation_for(op: str, x: Array) -> str:
    """The name of the implementation that `op` would run on arrays like `x`."""
    lib = backend_name(x)
    forced = forced_impl()
    order = (forced, "reference") if forced else _PREFERRED.get(lib, ("reference",))
    for impl in order:
        libs = _SUPPORTS[impl]
        if (libs is None or lib in libs) and op in kernels(impl):
            return impl
        if impl in _failures and (libs is None or lib in libs):
            _warn_fallback(impl)
    raise LookupError(f"no implementation of {op} for {lib} arrays")  # pragma: no cover


def resolve(op: str, x: Array) -> Callable:
    return kernels(implementation_for(op, x))[op]

