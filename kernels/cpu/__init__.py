"""Numba @njit CPU kernels for NumPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` prefers these for NumPy arrays and falls back to the reference for ops
missing here (linear, embedding: those are BLAS calls / a scatter already).
matmul-heavy parts of attention go through NumPy's BLAS.

Numba's on-disk cache (cache=True) is keyed on each kernel's own file: after editing
`_common.py` or `lanes.py`, delete `kernels/cpu/__pycache__` so kernels that inline their
helpers recompile.

Importing this package changes nothing in the process. Numba's threads share the cores with
BLAS's, and an OpenMP pool that spins while BLAS works slows both, so the threading layer is
chosen once, before the first kernel runs, in `threads.start()`: see that module. GNU OpenMP
does not survive fork: a child forked after a kernel ran is terminated at its first kernel; use
multiprocessing's "spawn" or "forkserver" start method, or set NUMBA_THREADING_LAYER=workqueue
(`workqueue` must not run kernels from several Python threads at once).
"""
from . import threads  # noqa: F401  (Numba loads here, or this import fails)


def __getattr__(name: str):
    """`KERNELS` and each kernel by its entry name (`nanonorm.dispatch.table_attribute`)."""
    from nanonorm.dispatch import table_attribute
    return table_attribute("numba", __name__, name)
