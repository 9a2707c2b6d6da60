"""Numba @njit CPU kernels for NumPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` prefers these for NumPy arrays and falls back to the reference for ops
missing here (linear, embedding: those are BLAS calls / a scatter already).
matmul-heavy parts of attention go through NumPy's BLAS (OpenBLAS beats torch's MKL here).

Numba's on-disk cache (cache=True) is keyed on each kernel's own file: after editing
`_common.py`, delete `kernels/cpu/__pycache__` so kernels that inline its helpers recompile.

Threading: unless NUMBA_THREADING_LAYER is set, the parallel kernels use Numba's `workqueue`
layer. The default `omp` layer's idle threads spin between kernels and starve OpenBLAS's
matmul threads: a training step of the `mini` preset (B=8, T=128) measured 2x slower with it
on a 2-core machine (median 410-445 ms against 181-217 ms). `workqueue` does not support
launching kernels from several Python threads at once; set NUMBA_THREADING_LAYER=omp (or tbb)
if you need that. This must happen before Numba's first parallel launch in the process.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from .adamw import adamw_step
from .attention import (scaled_dot_product_attention_backward,
                        scaled_dot_product_attention_forward)
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
