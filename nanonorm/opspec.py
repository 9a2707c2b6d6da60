"""One declaration per op, from which everything else about it is derived.

An `OpSpec` names the op, its reference module, its cache types, the checks of its public
arguments (whose signature and docstring become `nanonorm.functional`'s), how to draw its
inputs (for the pairing tests and the bench) and its bytes-moved or FLOP model. From the
declarations come:
- `nanonorm.functional`: `op`, `op_forward`, `op_backward` for every forward/backward op;
- the dispatch tables (`nanonorm.dispatch.kernels`): for each implementation, the functions
  named `<op>_forward` / `<op>_backward` (or the update's name) in its module of the
  reference module's name, e.g. `nanonorm/kernels/cpu/layernorm.py` beside
  `nanonorm/ops/layernorm.py`; a module that exists but lacks a declared function is an error,
  not a silent fallback;
- the pairing tests (`nanonorm.testing.check_spec`) and the bench's rows (`bench/cases.py`).

The declarations live in `nanonorm/specs/`, one module per family, each exposing `SPECS`;
`register` adds one from anywhere (a kernel author's own op, a test's toy op).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, NamedTuple


class Call(NamedTuple):
    """What a checked public call runs: the implementation chosen for `on`'s array library,
    with these arguments."""
    on: Any
    args: tuple
    kwargs: dict


class Sample(NamedTuple):
    """Inputs drawn for a test or a bench row, with what the error budget needs to know."""
    args: tuple                  # the forward's positional arguments (float arrays float64)
    kwargs: dict                 # its keyword arguments
    dy: Any                      # the upstream gradient for the backward (None: an update)
    out_scale: float | None = None   # magnitude the forward rounds at, where above the output's
    grad_scale: float | None = None  # the same for the gradients
    bwd_cond: float = 1.0        # widening of the backward's budget from a kernel-made cache


@dataclass(frozen=True)
class BenchCase:
    """One row of the bench grid: the op's forward (and backward) at fixed sizes."""
    name: str                                 # e.g. "layernorm_fwd"
    full: dict                                # GPT-2 small sizes, for spec.inputs
    quick: dict                               # a tiny size for the smoke test
    unit: str                                 # "GB/s" (work in bytes) or "GFLOP/s" (FLOPs)
    work: Callable[[dict], float]             # size -> bytes moved or FLOPs per call
    backward: bool = False                    # time forward + backward


@dataclass(frozen=True)
class OpSpec:
    name: str                        # F.<name>, F.<name>_forward, F.<name>_backward
    reference: ModuleType            # holds <name>_forward / <name>_backward (or <name>)
    cache: tuple                     # cache types the backward accepts
    check_forward: Callable | None   # the public signature and docstring: (...) -> Call
    check_backward: Callable | None  # (dy, cache) -> Call
    inputs: Callable                 # (rng, size: dict, kind: str) -> Sample, float64 arrays
    test_size: Callable              # rng -> a small, awkward size for inputs()
    bench: tuple = ()                # BenchCase rows
    torch: Callable | None = None    # the bench's peer: (torch, *args, **kwargs) -> tensor
    #                                  (an update's: -> a callable doing one step)
    update: bool = False             # an in-place update (one entry, no backward), e.g. AdamW
    implementations: dict = field(default_factory=dict)   # impl -> module, where not the
    #                                  kernels/<cpu|cuda>/<reference module name>.py default

    @property
    def module(self) -> str:
        """The module name shared by the reference and the kernels ("layernorm")."""
        return self.reference.__name__.rsplit(".", 1)[-1]

    @property
    def forward_name(self) -> str:
        return self.name if self.update else f"{self.name}_forward"

    @property
    def backward_name(self) -> str | None:
        return None if self.update else f"{self.name}_backward"

    @property
    def entries(self) -> tuple[str, ...]:
        return (self.forward_name,) if self.update else (self.forward_name, self.backward_name)


_specs: dict[str, OpSpec] = {}
_loaded = False
_listeners: list[Callable[[OpSpec | None], None]] = []


def specs() -> list[OpSpec]:
    """Every declared op: those of `nanonorm/specs/` and any registered since."""
    global _loaded
    if not _loaded:
        _loaded = True
        from . import specs as package
        for info in pkgutil.iter_modules(package.__path__):
            for spec in importlib.import_module(f"{package.__name__}.{info.name}").SPECS:
                _add(spec)
    return list(_specs.values())


def spec_for(entry: str) -> OpSpec:
    """The declaration an entry name ("layer_norm_backward") belongs to."""
    for spec in specs():
        if entry in spec.entries:
            return spec
    raise KeyError(f"no op declares {entry!r}")


def _add(spec: OpSpec) -> None:
    clash = [e for s in _specs.values() for e in s.entries if e in spec.entries]
    if spec.name in _specs or clash:
        raise ValueError(f"op {spec.name!r} is declared twice ({clash or spec.name})")
    _specs[spec.name] = spec


def register(spec: OpSpec) -> OpSpec:
    """Declare an op at run time: it joins functional, dispatch, the tests' and the bench's
    lists as if it were in `nanonorm/specs/`."""
    specs()
    _add(spec)
    for notify in _listeners:
        notify(spec)
    return spec


def unregister(name: str) -> None:
    """Remove a registered op again (a test's toy op)."""
    spec = _specs.pop(name)
    for notify in _listeners:
        notify(None)
    del spec


def on_change(listener: Callable[[OpSpec | None], None]) -> None:
    """Call listener(spec) after each register (listener(None) after an unregister)."""
    _listeners.append(listener)
