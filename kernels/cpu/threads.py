"""Numba's threading layer: chosen once, just before the first kernel runs, never at import.

GNU OpenMP's idle threads spin between kernels (300,000 polls by default) and starve OpenBLAS's
matmul threads on the same cores, so the kernels start `omp` with a short spin: GOMP_SPINCOUNT
is set only while libgomp loads (it reads the variable once), then removed. A libgomp that is
already loaded (torch ships one under the same name) has its default spin in place and Numba
would share it, so then `workqueue` runs instead: no spin, but slower launches of small
kernels. A layer you set (NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY, or
numba.config in code) is kept, and so is a GOMP_SPINCOUNT or OMP_WAIT_POLICY of yours.

`start()` applies the choice; `nanonorm.dispatch` calls it when it first hands out a Numba
kernel. Call it yourself to fix the layer earlier, e.g. before `import torch` to keep `omp`.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numba

_NUMBA_PRIORITY = ["tbb", "omp", "workqueue"]    # Numba's own default
_OMP_FIRST = ["omp", "tbb", "workqueue"]         # without libgomp, Numba's next choices
_SHORT_SPIN = "1000"                             # polls: about a microsecond idle


class Choice(NamedTuple):
    layer: str          # what Numba is asked for: a layer, or "default" (first of priority)
    priority: list
    spin: str | None    # GOMP_SPINCOUNT while libgomp loads; None: the environment's own
    by: str             # "you", "nanonorm", or "numba" (its threads started without start())
    why: str

    def asked(self) -> str:
        return self.layer if self.layer != "default" else " > ".join(self.priority)


_lock = threading.Lock()
_started: Choice | None = None       # what start() applied


def choice() -> Choice:
    """What `start()` would do in this process, as things stand now."""
    cfg, env = numba.config, os.environ
    yours = [k for k in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY") if k in env]
    if yours or cfg.THREADING_LAYER != "default" or cfg.THREADING_LAYER_PRIORITY != _NUMBA_PRIORITY:
        why = ", ".join(f"{k}={env[k]}" for k in yours) or "set in numba.config"
        return Choice(cfg.THREADING_LAYER, list(cfg.THREADING_LAYER_PRIORITY), None, "you", why)
    spin = [f"{k}={env[k]}" for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY") if k in env]
    if spin:
        return Choice("default", _OMP_FIRST, None, "nanonorm", f"omp with your {', '.join(spin)}")
    if libgomp_loaded():
        return Choice("workqueue", _NUMBA_PRIORITY, None, "nanonorm",
                      "a libgomp (torch's?) was loaded already, with its long idle spin")
    return Choice("default", _OMP_FIRST, _SHORT_SPIN, "nanonorm",
                  f"omp with GOMP_SPINCOUNT={_SHORT_SPIN} while libgomp loads")


def start() -> None:
    """Start Numba's threads as `choice()` says, once; later calls (any thread) do nothing."""
    global _started
    with _lock:
        if _started is not None:
            return
        plan = choice()
        try:
            from numba.np.ufunc.parallel import _launch_threads   # private: may move
        except ImportError:
            _launch_threads = None                     # Numba's own choice, at first launch
        if running_layer() is not None or _launch_threads is None:
            _started = _not_chosen_here(plan)          # too late, or no way to choose
            return
        cfg, env = numba.config, os.environ
        saved = cfg.THREADING_LAYER, cfg.THREADING_LAYER_PRIORITY
        cfg.THREADING_LAYER, cfg.THREADING_LAYER_PRIORITY = plan.layer, plan.priority
        if plan.spin is not None:
            env["GOMP_SPINCOUNT"] = plan.spin
        try:
            _launch_threads()                          # loads the layer (and libgomp) now
        finally:
            cfg.THREADING_LAYER, cfg.THREADING_LAYER_PRIORITY = saved   # read only at launch
            if plan.spin is not None:
                del env["GOMP_SPINCOUNT"]
        _started = plan


def running_layer() -> str | None:
    """The layer Numba's threads run on, or None before they start."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def state() -> dict:
    """For `nanonorm info`: the layer in use, or None before Numba's threads start (`next`
    then says what the first kernel launch asks for); who chose it, and why."""
    layer = running_layer()
    plan = _started or (choice() if layer is None else _not_chosen_here(choice()))
    return {"layer": layer, "next": None if layer else plan.asked(), "chosen_by": plan.by,
            "why": plan.why}


def _not_chosen_here(plan: Choice) -> Choice:
    """The record of threads that started without start() choosing: your layer or Numba's."""
    return plan if plan.by == "you" else plan._replace(
        by="numba", why="its threads started before the first nanonorm kernel")


def libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:                                    # not Linux: no way to tell, assume not
        return False
