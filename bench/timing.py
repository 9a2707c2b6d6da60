"""How the bench times: CPU providers take turns in blocks; GPU calls are timed with CUDA events
after an L2 flush; the machine's own rates (bandwidth, matmul) are measured the same way."""
from __future__ import annotations

import statistics
import time

import numpy as np

TIME_BUDGET_S = 0.5     # fast rows repeat until about this long (at most MAX_REPEATS calls)
MAX_REPEATS = 200
ROUNDS = 5       # each provider's timed calls come in this many blocks, providers taking turns
SETTLE_S = 0.2   # idle before each block: OpenBLAS's workers spin ~0.1 s after a matmul, and
                 # one provider's spinning threads must not bill the next provider's calls


def repeats(prov, heavy, quick, call_s, fixed):
    """Timed calls for one provider of a case: a fixed count, or enough for TIME_BUDGET_S."""
    if fixed:
        return fixed
    if quick:
        return 2
    base = 5 if heavy else 3 if prov == "reference" else 7
    return max(base, min(MAX_REPEATS, int(TIME_BUDGET_S / max(call_s, 1e-9))))


def interleaved(fns, reps):
    """Median seconds per provider. The providers take turns in ROUNDS blocks, so drift on a
    shared machine lands on all alike; each block starts after SETTLE_S of idle and, for fast
    rows (more calls than blocks), one untimed call that warms the caches for its provider."""
    times = {p: [] for p in fns}
    for r in range(ROUNDS):
        for p, fn in fns.items():
            n = reps[p] * (r + 1) // ROUNDS - reps[p] * r // ROUNDS   # blocks sum to reps[p]
            if n == 0:
                continue
            time.sleep(SETTLE_S)
            if reps[p] > ROUNDS:
                fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[p].append(time.perf_counter() - t0)
    return {p: statistics.median(t) for p, t in times.items()}


def median_time(fn, n: int):
    """(median seconds, last result) of n calls."""
    times, out = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def cpu_rates(n=1 << 25, reps=7):
    """Copy bandwidth of a fused 2-array-read/1-write triad (GB/s), run the way the kernels
    run (a task loop on nanonorm's threads), and NumPy's sgemm GFLOP/s."""
    from numba import njit

    from nanonorm.kernels.cpu import pool
    from nanonorm.kernels.cpu._common import TASK_KERNEL

    @njit(**TASK_KERNEL)
    def triad(task, per, a, b, c, s):
        a, b, c = a[task * per:(task + 1) * per], b[task * per:(task + 1) * per], \
            c[task * per:(task + 1) * per]
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    ntasks, per = pool.tasks(n)

    def run():
        pool.run(triad, ntasks, per, a, b, c, np.float32(2.0))
    run()
    bw = 3 * n * 4 / median_time(run, reps)[0] / 1e9
    m = 2048
    x, y = (np.random.default_rng(0).standard_normal((m, m), np.float32) for _ in range(2))
    return {"triad_GBps": bw, "sgemm_GFLOPps": 2 * m ** 3 / median_time(lambda: x @ y, reps)[0]
            / 1e9}


class GpuTimer:
    """Median of CUDA-event timings with an L2 flush before each repeat (flush not timed)."""

    def __init__(self):
        import cupy
        self.cp = cupy
        l2 = cupy.cuda.Device().attributes.get("L2CacheSize", 50 << 20)
        self.flush_buf = cupy.empty(2 * l2, dtype=cupy.uint8)      # 2x L2: evicts all of it

    def __call__(self, fn, reps: int, warmup: int = 2):
        cp = self.cp
        for _ in range(warmup):
            fn()
        times = []
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        for _ in range(reps):
            self.flush_buf.fill(0)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)   # seconds
        cp.cuda.Device().synchronize()
        return statistics.median(times)


def gpu_rates(timer: GpuTimer, n: int = 1 << 28) -> dict:
    """Device-to-device copy bandwidth (read + write, GB/s) and sgemm GFLOP/s."""
    cp = timer.cp
    a, b = cp.ones(n // 4, cp.float32), cp.empty(n // 4, cp.float32)            # n bytes each
    copy_s = timer(lambda: cp.copyto(b, a), 7)
    m = 8192
    x = cp.random.default_rng(0).standard_normal((m, m), dtype=cp.float32)
    gemm_s = timer(lambda: x @ x, 5)
    return {"copy_GBps": 2 * n / copy_s / 1e9, "sgemm_GFLOPps_gpu": 2 * m ** 3 / gemm_s / 1e9}
