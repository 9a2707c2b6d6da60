"""Shared test setup: Hypothesis profiles and the CUDA simulator switch.

HYPOTHESIS_PROFILE=ci (derandomized, what CI runs) or dev (the default: random, fewer examples).
"""
import os
import shutil

from hypothesis import HealthCheck, settings

# Without a GPU the numba-cuda kernels run on the CUDA simulator. Numba reads this once, when
# it is first imported, so it is set here before any test module imports numba.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

_common = dict(deadline=None,  # the first call of a Numba kernel compiles it
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=40, print_blob=True, **_common)
settings.register_profile("dev", max_examples=20, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
