"""numba-cuda kernels for CuPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` imports this package only for CuPy arrays and prefers these kernels there,
falling back to the reference for ops missing here (linear, embedding: cuBLAS matmuls and a
scatter-add already). Under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1) the same kernels
run on NumPy arrays, which is how the test suite checks them without a GPU.
"""
from .layernorm import layer_norm_backward, layer_norm_forward

KERNELS = {f.__name__: f for f in (
    layer_norm_forward, layer_norm_backward,
)}
