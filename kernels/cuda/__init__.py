"""numba-cuda kernels for CuPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` imports this package only for CuPy arrays and prefers these kernels there,
falling back to the reference for ops missing here (linear, embedding: cuBLAS matmuls and a
scatter-add already). Under numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1) the same kernels
run on NumPy arrays, which is how the test suite checks them without a GPU.
"""



def __getattr__(name: str):
    """`KERNELS` and each kernel by its entry name (`nanonorm.dispatch.table_attribute`)."""
    from nanonorm.dispatch import table_attribute
    return table_attribute("cuda", __name__, name)
