"""Where the CUDA kernel tests run: numba-cuda's simulator on NumPy arrays without a GPU, CuPy
arrays on a GPU (tests/test_kernels_cuda*.py).

conftest.py sets NUMBA_ENABLE_CUDASIM=1 on machines without `nvidia-smi`, before numba is
imported; numba reads it once, so `SIMULATOR` is the decision for the whole run. Importing
this module skips the importing test module where numba-cuda is missing, or where the
simulator is off and no GPU is usable.
"""
import functools

import numpy as np
import pytest

from nanonorm.machine import cuda_facts

numba_cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
SIMULATOR = bool(numba_cuda.config.ENABLE_CUDASIM)    # decided by conftest, before numba's import


def _device_module():
    """cupy with a usable GPU; skips the module where the simulator is off without one."""
    missing = cuda_facts()["missing"]             # nanonorm info's and the bench's answer
    if missing:
        pytest.skip(f"the simulator is off (NUMBA_ENABLE_CUDASIM=0): {missing}",
                    allow_module_level=True)
    import cupy
    return cupy


XP = np if SIMULATOR else _device_module()    # the array module the kernels run on


needs_gpu = pytest.mark.skipif(SIMULATOR, reason="needs a GPU: the simulator runs one Python "
                               "thread per GPU thread")


def dev(obj):
    """obj with every NumPy array in it (tuples and caches included) on the kernels' device."""
    return _moved(obj, np.ndarray, XP.asarray)


def host(obj):
    """obj with every device array in it back on NumPy."""
    return obj if SIMULATOR else _moved(obj, XP.ndarray, XP.asnumpy)


def _moved(obj, kind, move):
    if isinstance(obj, kind):
        return move(obj)
    if isinstance(obj, tuple):
        items = [_moved(o, kind, move) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    return obj


def on_device(f):
    """f taking and returning NumPy arrays, running on the device: an in-place update (None
    returned) has its updated arrays copied back into the caller's."""
    @functools.wraps(f)
    def call(*args, **kw):
        moved = [dev(a) for a in args]
        result = f(*moved, **{k: dev(v) for k, v in kw.items()})
        if result is None:
            for a, m in zip(args, moved):
                if isinstance(a, np.ndarray):
                    a[...] = host(m)
            return None
        return host(result)
    return call
