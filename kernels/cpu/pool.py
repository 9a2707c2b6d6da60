"""nanonorm's own threads for the Numba kernels: they sleep when idle, never spin.

Numba's parallel loops run on its threading layer, chosen once per process by whoever launches
first: a user's own `@njit(parallel=True)` loop that ran before nanonorm leaves GNU OpenMP's
pool spinning between kernels, and spinning threads starve OpenBLAS's matmul threads beside
them, or anything else on a busy machine. So the kernels are plain `@njit(nogil=True)` loops
over a range of tasks, and `run(kernel, ntasks, *args)` hands the tasks out to a few Python
threads that block on a condition variable between jobs. Tasks are claimed one at a time, so
a thread slowed by another process on its core takes fewer of them.

Threads: `NANONORM_NUM_THREADS`, else the CPUs this process may run on. A job of one task, or a
pool of one thread, runs on the calling thread. Results never depend on the thread count: each
task writes its own slice of the output. After `fork` the child starts its own threads.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading

import numpy as np

ENV_VAR = "NANONORM_NUM_THREADS"


def default_threads() -> int:
    """NANONORM_NUM_THREADS if set, else the CPUs this process may use."""
    value = os.environ.get(ENV_VAR)
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a positive integer, got {value!r}") from None
        if n < 1:
            raise ValueError(f"{ENV_VAR} must be a positive integer, got {value!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                       # not Linux
        return os.cpu_count() or 1


class _Job:
    __slots__ = ("kernel", "args", "ntasks", "tasks", "running", "error", "errstate")

    def __init__(self, kernel, args, ntasks, nthreads):
        self.kernel, self.args, self.ntasks = kernel, args, ntasks
        self.tasks = itertools.count()           # next() is atomic under the GIL
        self.running = nthreads
        self.error = None
        self.errstate = np.geterr()              # NumPy's is per thread: the caller's holds

    def work(self) -> None:
        try:
            with np.errstate(**self.errstate):
                for task in iter(self.tasks.__next__, None):
                    if task >= self.ntasks:
                        return
                    self.kernel(task, *self.args)
        except BaseException as e:               # noqa: BLE001 - re-raised by run()
            self.error = e


class Pool:
    def __init__(self, nthreads: int):
        self.nthreads = nthreads
        self._wake = threading.Condition()
        self._done = threading.Condition()
        self._job: _Job | None = None
        self._generation = 0
        self._lock = threading.Lock()            # one job at a time
        for _ in range(nthreads - 1):
            threading.Thread(target=self._worker, daemon=True, name="nanonorm-kernel").start()

    def _worker(self) -> None:
        seen = 0
        while True:
            with self._wake:
                while self._generation == seen:
                    self._wake.wait()
                seen, job = self._generation, self._job
            job.work()
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        with self._done:
            job.running -= 1
            if job.running == 0:
                self._done.notify_all()

    def run(self, kernel, ntasks: int, *args) -> None:
        """kernel(task, *args) for task in range(ntasks), on the pool's threads."""
        if ntasks <= 1 or self.nthreads == 1:
            for task in range(ntasks):
                kernel(task, *args)
            return
        with self._lock:
            job = _Job(kernel, args, ntasks, self.nthreads)
            with self._wake:
                self._job = job
                self._generation += 1
                self._wake.notify_all()
            job.work()
            self._finish(job)
            with self._done:
                while job.running:
                    self._done.wait()
            with self._wake:
                self._job = None
            job.kernel = job.args = None         # a worker's last job holds no arrays
        if job.error is not None:
            raise job.error


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """The process's pool, started at the first kernel (never at import)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_after_fork_in_child)
                _pool = Pool(default_threads())
    return _pool


def run(kernel, ntasks: int, *args) -> None:
    pool().run(kernel, ntasks, *args)


_blas = None            # threadpoolctl's controller of the BLAS libraries NumPy loaded
_blas_lock = threading.Lock()


@contextlib.contextmanager
def blas_single_threaded():
    """BLAS on one thread inside the block (restored after), for matmuls that run on the
    pool's threads: BLAS's own workers would spin after each call (OpenBLAS busy-waits ~0.1 s
    for the next one), taking the cores from the pool's next kernels."""
    global _blas
    if _blas is None:
        with _blas_lock:
            if _blas is None:
                from threadpoolctl import ThreadpoolController
                _blas = ThreadpoolController().select(user_api="blas")
    saved = [(lib, lib.num_threads) for lib in _blas.lib_controllers]
    try:
        for lib, n in saved:
            if n != 1:
                lib.set_num_threads(1)
        yield
    finally:
        for lib, n in saved:
            if n != 1:
                lib.set_num_threads(n)


# Below this many elements of simple work a task costs more to hand to a sleeping thread
# (~50 µs to wake it) than it saves.
MIN_TASK_WORK = 1 << 15


def tasks(n_items: int, item_work: int = 1, per_thread: int = 4) -> tuple[int, int]:
    """(ntasks, items per task) for n_items of about item_work elements each: per_thread tasks
    per thread (a thread slowed by another process takes fewer), none under MIN_TASK_WORK."""
    total = n_items * max(1, item_work)
    ntasks = max(1, min(per_thread * threads(), total // MIN_TASK_WORK, n_items))
    per = -(-n_items // ntasks) if n_items else 1
    return (-(-n_items // per) if n_items else 0), per


def threads() -> int:
    """How many threads the kernels run on (starting the pool)."""
    return pool().nthreads


def _after_fork_in_child() -> None:
    global _pool
    _pool = None                                 # the parent's threads do not exist here

