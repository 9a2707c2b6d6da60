"""Numba @njit CPU kernels for NumPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` prefers these for NumPy arrays and falls back to the reference for ops
missing here.
"""
from .layernorm import layer_norm_backward, layer_norm_forward

KERNELS = {f.__name__: f for f in (
    layer_norm_forward, layer_norm_backward,
)}
