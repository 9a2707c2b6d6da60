"""numba-cuda kernels for CuPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` imports this package only for CuPy arrays and prefers these kernels there,
falling back to the reference for ops missing here (linear, embedding: cuBLAS matmuls and a
scatter-add already). Under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1) the same kernels
run on NumPy arrays, which is how the test suite checks them without a GPU.
"""
from .adamw import adamw_step
from .attention import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward
from .gelu import gelu_backward, gelu_forward
from .layernorm import layer_norm_backward, layer_norm_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward

KERNELS = {f.__name__: f for f in (
    layer_norm_forward, layer_norm_backward,
    softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward,
    scaled_dot_product_attention_forward, scaled_dot_product_attention_backward,
    gelu_forward, gelu_backward,
    cross_entropy_forward, cross_entropy_backward,
    adamw_step,
)}
