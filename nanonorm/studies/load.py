"""How much of the machine other processes take while something is being timed.

A background thread samples, every `interval` seconds, the cores other processes kept busy
since the previous sample: (all CPUs' busy time, from /proc/stat) minus (this process's own
CPU time), over the wall time. A timing taken while others used a tenth of the cores or more
is marked busy: it may be slowed or scattered by them.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable

BUSY_FRACTION = 0.1   # other processes' mean share of the cores that marks a timing as busy


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (Linux), None where unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    ticks = [int(v) for v in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class OtherProcesses:
    """Callable: cores other processes kept busy since the previous call (None on the first
    call, or where /proc/stat is unavailable)."""

    kind = "other processes' cores (from /proc/stat, this process excluded)"

    def __init__(self, busy: Callable[[], float | None] = machine_busy_seconds,
                 own: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic):
        self._busy, self._own, self._clock = busy, own, clock
        self._last = None

    def __call__(self) -> float | None:
        now = (self._busy(), self._own(), self._clock())
        last, self._last = self._last, now
        if last is None or now[0] is None or last[0] is None or now[2] <= last[2]:
            return None
        others = (now[0] - last[0]) - (now[1] - last[1])
        return max(0.0, others / (now[2] - last[2]))


class LoadMonitor:
    """`with LoadMonitor() as load: ...` samples the source at entry, every `interval`
    seconds in a thread, and at exit; load.summary() gives the mean, the max and whether the
    machine was busy."""

    def __init__(self, source: Callable[[], float | None] | None = None,
                 interval: float = 0.25, cores: int | None = None):
        self.source = OtherProcesses() if source is None else source
        self.interval, self.cores = interval, cores or os.cpu_count() or 1
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        value = self.source()
        if value is not None:
            self.samples.append(float(value))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "LoadMonitor":
        self._sample()              # primes a differencing source
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict:
        s = self.samples
        mean = sum(s) / len(s) if s else None
        return {"kind": getattr(self.source, "kind", "custom source"), "cores": self.cores,
                "samples": len(s), "mean_other_cores": mean,
                "max_other_cores": max(s) if s else None,
                "busy": None if mean is None else mean >= BUSY_FRACTION * self.cores}
