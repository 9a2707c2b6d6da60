"""Numba @njit CPU kernels for NumPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` prefers these for NumPy arrays and falls back to the reference for ops
missing here (linear, embedding: those are BLAS calls / a scatter already).
matmul-heavy parts of attention go through NumPy's BLAS.

Numba's on-disk cache (cache=True) is keyed on each kernel's own file: after editing
`_common.py` or `lanes.py`, delete `kernels/cpu/__pycache__` so kernels that inline their
helpers recompile.

Importing this package changes nothing in the process: the kernels run on nanonorm's own
threads (`pool.py`), started at the first kernel, sleeping between kernels, never spinning;
Numba's threading layer is never started by nanonorm, so a user's own parallel `@njit` code,
torch or OpenMP settings leave the kernels alone. BLAS products inside the kernels (attention,
linear) run on the same threads with BLAS on one thread. NANONORM_NUM_THREADS sets how many.
"""
import numba  # noqa: F401  (a missing or broken Numba fails this import, not a kernel)


def __getattr__(name: str):
    """`KERNELS` and each kernel by its entry name (`nanonorm.dispatch.table_attribute`)."""
    from nanonorm.dispatch import table_attribute
    return table_attribute("numba", __name__, name)
