"""Shared test setup: Hypothesis profiles and the CUDA simulator switch.

HYPOTHESIS_PROFILE=ci (derandomized, what CI runs) or dev (the default: random, fewer examples).
"""
import os
import shutil

import pytest

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


def pytest_configure(config):
    """Refuse to run when the code under test is not this checkout's, or when the Numba kernels
    the suite means to test would not be the ones running (a broken Numba, NANONORM_IMPL)."""
    import pathlib

    import nanonorm
    from nanonorm import dispatch

    here = pathlib.Path(__file__).resolve().parent.parent / "nanonorm"
    if pathlib.Path(nanonorm.__file__).resolve().parent != here:
        raise pytest.UsageError(f"the tests would import {nanonorm.__file__}, not this "
                                f"checkout's {here}: install it with pip install -e .")
    if os.environ.get(dispatch.ENV_VAR):
        raise pytest.UsageError(f"{dispatch.ENV_VAR}={os.environ[dispatch.ENV_VAR]} would run "
                                f"one implementation where the tests mean the Numba kernels; "
                                f"unset it (tests choose with use_impl)")
    if not dispatch.kernels("numba"):
        raise pytest.UsageError(f"the Numba kernels cannot be loaded, and the suite tests "
                                f"them: {dispatch.unavailable()['numba']}")
