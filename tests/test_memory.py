"""keep_freed_memory: a second round of the same allocations reuses pages instead of faulting.

Run in fresh processes: the allocator setting is process-wide and would leak into other tests.
"""
import ctypes
import platform
import subprocess
import sys

import pytest

from nanonorm.memory import keep_freed_memory, release_freed_memory

# ~190 MB in 48 heap-sized (4 MB) arrays of different lengths
ARRAYS = "[np.ones((1 << 20) + 7 * i, np.float32) for i in range(48)]"

CHURN = f"""
import resource, sys, numpy as np
if sys.argv[1] == "keep":
    from nanonorm.memory import keep_freed_memory
    assert keep_freed_memory()
def churn():                      # all freed on return
    arrays = {ARRAYS}
    return sum(float(a[-1]) for a in arrays)
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(script: str, *args: str) -> list[str]:
    """The words a script printed, run in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", script, *args], check=True,
                          capture_output=True, text=True).stdout.split()


def _second_round_faults(mode: str) -> int:
    return int(_run(CHURN, mode)[-1])


GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt: glibc only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default = _second_round_faults("default")
    if default < 1000:
        pytest.skip(f"only {default} faults without it here (huge pages): nothing to show")
    # 190 MB of fresh 4 KB pages is up to ~48,000 faults (24,620 measured here)
    kept = _second_round_faults("keep")
    assert kept * 10 < default, (kept, default)


RELEASE = f"""
import os, numpy as np
from nanonorm.memory import keep_freed_memory, release_freed_memory
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
assert keep_freed_memory()
arrays = {ARRAYS}
del arrays
kept = rss_mb()
release_freed_memory()
print(kept, rss_mb())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim: glibc only")
def test_release_hands_kept_memory_back():
    kept, released = map(float, _run(RELEASE))
    assert kept - released > 150, (kept, released)      # of the ~190 MB the arrays held


def test_without_glibc_it_changes_nothing_and_says_so(monkeypatch):
    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert keep_freed_memory() is False
    assert release_freed_memory() is False
