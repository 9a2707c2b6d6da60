"""Numba @njit CPU kernels for NumPy arrays, with the reference's signatures and caches.

`KERNELS` maps op names to functions exactly as `nanonorm.ops.registry.KERNELS` does;
`nanonorm.dispatch` prefers these for NumPy arrays and falls back to the reference for ops
missing here (linear, embedding: those are BLAS calls / a scatter already).
matmul-heavy parts of attention go through NumPy's BLAS (OpenBLAS beats torch's MKL here).

Numba's on-disk cache (cache=True) is keyed on each kernel's own file: after editing
`_common.py` or `lanes.py`, delete `kernels/cpu/__pycache__` so kernels that inline their
helpers recompile.

Threading: unless you chose a layer (NUMBA_THREADING_LAYER or _PRIORITY in the environment, or
numba.config.THREADING_LAYER in code), importing this package starts Numba's threads on the
`omp` layer with GNU OpenMP's idle spin cut to GOMP_SPINCOUNT=1000 (about a microsecond), then
restores the environment (libgomp reads it once, when it loads). libgomp's default spin
(300,000 polls) keeps idle threads busy between kernels and starves OpenBLAS's matmul threads;
`workqueue` does not spin but takes ~75 µs per kernel launch against ~1.5 µs. Measured side by
side on a 2-core machine (medians): mini-preset training step (B=8, T=128) 336 ms (omp, default
spin) / 135 ms (workqueue) / 76 ms (omp, spin 1000); LayerNorm fwd+bwd (8192, 768) 8.1 ms
(workqueue) / 4.8 ms (omp, 1000). A GOMP_SPINCOUNT or OMP_WAIT_POLICY of your own is left as
you set it. Without libgomp, Numba falls back to tbb or workqueue.

What this means for you:
- torch ships a libgomp under the same name. Imported after the kernels, torch shares the one
  loaded here, short spin included (its GPT-2 small training step measured the same either way,
  5.4-5.9 s). Imported before, its libgomp and default spin are in place and Numba would share
  them (GPT-2 small forward 2.0 -> 3.1 s), so the kernels use `workqueue` instead.
- GNU OpenMP does not survive fork: a child forked (multiprocessing's default start method on
  Linux) after a kernel ran here is terminated when it runs a kernel. Use the "spawn" or
  "forkserver" start method, or set NUMBA_THREADING_LAYER=workqueue.
- `workqueue` (when chosen as above) must not run kernels from several Python threads at once.
"""
import os

import numba


def _start_threads():
    if (any(k in os.environ for k in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"))
            or numba.config.THREADING_LAYER != "default"):
        return                                         # the user's choice, untouched
    ours = not any(k in os.environ for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"))
    if ours and _libgomp_loaded():
        numba.config.THREADING_LAYER = "workqueue"     # its spin is set already: avoid it
        return
    try:
        from numba.np.ufunc.parallel import _launch_threads   # private: may move
    except ImportError:
        return                                         # Numba's own choice, at first launch
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    if ours:
        os.environ["GOMP_SPINCOUNT"] = "1000"
    try:
        _launch_threads()                              # loads the layer (and libgomp) now
    finally:
        if ours:
            del os.environ["GOMP_SPINCOUNT"]


def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:                                    # not Linux: no way to tell, assume not
        return False


_start_threads()



def __getattr__(name: str):
    """`KERNELS` and each kernel by its entry name (`nanonorm.dispatch.table_attribute`)."""
    from nanonorm.dispatch import table_attribute
    return table_attribute("numba", __name__, name)
