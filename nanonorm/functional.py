"""The public ops: validate once at the boundary, then dispatch to an implementation.

Every op comes as `op(...)` (the output only), `op_forward(...) -> (out, cache)` and
`op_backward(dout, cache)`, which returns fresh arrays in the order of the forward's inputs
(None for an absent optional parameter). Array type, device and dtype in = out.

The functions are made from the op declarations (`nanonorm/specs/`): each takes the signature
and docstring of its declaration's argument check, runs the check, then the implementation
`nanonorm.dispatch` picks for the checked arrays. Ops: layer_norm, softmax, log_softmax,
scaled_dot_product_attention, gelu, linear, embedding, cross_entropy (and any registered with
`nanonorm.opspec.register`).

Every implementation (reference, Numba, CUDA) gives the same answer at the edges:
- dtypes: float32 and float64 only; float16, bfloat16, long double and other float types are
  refused with a TypeError (nothing is computed in one precision and returned in another).
- NaN in gives NaN out, where the math says it reaches: the element (GELU), the row (softmax,
  log_softmax, LayerNorm, a cross-entropy row, an attention query) - never a silent 0.
- Empty dims give empty results (or zeros where a sum over nothing is meant); the few shapes
  whose result is undefined raise a ValueError naming the argument (see each op).
"""
from __future__ import annotations

import functools
import inspect

from . import device_checks, opspec
from .dispatch import resolve

__all__: list[str] = []


def _public(fn, name: str, check):
    """fn under `name` with the signature and docstring of `check`."""
    fn = functools.wraps(check)(fn)
    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__signature__ = inspect.signature(check).replace(         # it returns what the op does
        return_annotation=inspect.Signature.empty)
    return fn


def _functions(spec: opspec.OpSpec) -> dict:
    """op, op_forward and op_backward of one declaration."""
    check_forward, check_backward = spec.check_forward, spec.check_backward
    forward_name, backward_name = spec.forward_name, spec.backward_name

    def forward(*args, **kwargs):
        device_checks.poll()                # an earlier call's device check, if it failed
        call = check_forward(*args, **kwargs)
        return resolve(forward_name, call.on)(*call.args, **call.kwargs)

    def output(*args, **kwargs):
        return forward(*args, **kwargs)[0]

    def backward(dy, cache):
        call = check_backward(dy, cache)
        return resolve(backward_name, call.on)(*call.args, **call.kwargs)

    return {spec.name: _public(output, spec.name, check_forward),
            forward_name: _public(forward, forward_name, check_forward),
            backward_name: _public(backward, backward_name, check_backward)}


def _install(spec: opspec.OpSpec | None = None) -> None:
    """(Re)make the functions of every declared forward/backward op."""
    for name in __all__:
        globals().pop(name, None)
    __all__.clear()
    for s in opspec.specs():
        if not s.update:
            functions = _functions(s)
            globals().update(functions)
            __all__.extend(functions)


_install()
opspec.on_change(_install)
