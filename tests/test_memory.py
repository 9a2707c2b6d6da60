"""keep_freed_memory: a second round of the same allocations reuses pages instead of faulting.

Run in fresh processes: the allocator setting is process-wide and would leak into other tests.
"""
import subprocess
import sys

import pytest

from nanonorm.memory import keep_freed_memory

CHURN = """
import resource, sys, numpy as np
if sys.argv[1] == "keep":
    from nanonorm.memory import keep_freed_memory
    assert keep_freed_memory()
def churn():                      # ~190 MB in 4 MB arrays, all freed on return
    arrays = [np.ones((1 << 20) + 7 * i, np.float32) for i in range(48)]
    return sum(float(a[-1]) for a in arrays)
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_round_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    kept, default = _second_round_faults("keep"), _second_round_faults("default")
    # 190 MB of fresh 4 KB pages is ~48,000 faults (24,620 measured here; fewer where the
    # kernel backs them with huge pages); reused pages need none
    assert kept < 1000 and kept <= default, (kept, default)


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="off Linux only")
def test_elsewhere_it_changes_nothing_and_says_so():
    assert keep_freed_memory() is False
