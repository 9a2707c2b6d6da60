"""Value checks on device arrays without a host sync: checked on the device, raised later.

Reading a value back from a GPU (`bool(xp.any(bad))`) makes the host wait for every kernel
queued before it: one such check per op drains the GPU a dozen times per training step. So a
check that needs values (ids in range) runs where the array lives:
- host arrays (NumPy, torch on the CPU, array_api_strict's CPU device): checked at once;
- device arrays: the check's flag is computed on the device and copied, without waiting, to
  host memory the check owns; it raises (ValueError, the same message) at the first nanonorm
  call after the GPU got there (`poll`, a non-blocking event query), and at the latest where
  nanonorm must know: `check_pending()`, which `AdamW.step` calls before it changes a
  parameter and the trainer calls when it reads the loss. It waits only for the flags, not for
  the work queued after them.
Until then the kernels must stay safe on bad ids (CuPy's indexing wraps them; the CUDA loss
kernel reads no logit out of its row): wrong numbers, never memory out of bounds.

`immediate()` (or NANONORM_SYNC_CHECKS=1) checks device arrays at once, for debugging, as
CUDA_LAUNCH_BLOCKING does for kernels. `trusted()` marks ids a caller has already validated
(GPT.forward checks its ids once, then runs its ops inside it).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Callable, Iterator, NamedTuple

from .backend import Array, is_cupy_array

__all__ = ["check_pending", "defer", "immediate", "pending", "poll", "trusted"]

ENV_VAR = "NANONORM_SYNC_CHECKS"

_immediate: contextvars.ContextVar[bool] = contextvars.ContextVar("nanonorm_immediate",
                                                                  default=False)
_trusted: contextvars.ContextVar[bool] = contextvars.ContextVar("nanonorm_trusted",
                                                                default=False)


class _Check(NamedTuple):
    flag: Array                     # 0-d bool on the device: True when the values break a rule
    host: object                    # its pinned host copy (CuPy), None elsewhere
    event: object                   # recorded after the copy (CuPy), None elsewhere
    message: Callable[[], str]      # the ValueError's text (may read the device: it failed)


_pending: list[_Check] = []


@contextlib.contextmanager
def _switched_on(var: contextvars.ContextVar) -> Iterator[None]:
    token = var.set(True)
    try:
        yield
    finally:
        var.reset(token)


def immediate():
    """Check device arrays at once inside the block (one host read per check)."""
    return _switched_on(_immediate)


def is_immediate() -> bool:
    return _immediate.get() or os.environ.get(ENV_VAR, "") not in ("", "0")


def trusted():
    """Skip id-range checks inside the block: the caller validated the ids it passes."""
    return _switched_on(_trusted)


def is_trusted() -> bool:
    return _trusted.get()


def defer(flag: Array, message: Callable[[], str]) -> None:
    """Remember a device check: `flag` (0-d bool) is True when it failed."""
    poll()
    host = event = None
    if is_cupy_array(flag):
        import cupy
        import cupyx
        host = cupyx.empty_pinned((), dtype=bool)
        cupy.asnumpy(flag, out=host, blocking=False)   # queued behind the flag: no wait
        event = cupy.cuda.Event(block=False, disable_timing=True)
        event.record()
    _pending.append(_Check(flag, host, event, message))


def pending() -> int:
    """How many device checks have not been read yet."""
    return len(_pending)


def poll() -> None:
    """Raise the first failed check among those the GPU has finished, without waiting."""
    done = []
    for c in _pending:
        if c.event is None or not c.event.done:
            break                                   # in stream order: the rest come later
        done.append(c)
    _settle(done, wait=False)


def check_pending() -> None:
    """Wait for every pending check's flag (not for the work after it) and raise the first
    that failed. A no-op when nothing is pending, so it costs nothing on host data."""
    _settle(list(_pending), wait=True)


def _settle(checks: list[_Check], *, wait: bool) -> None:
    if not checks:
        return
    if wait and checks[-1].event is not None:
        checks[-1].event.synchronize()              # the last flag's copy: all are done
    del _pending[:len(checks)]
    failed = next((c for c in checks if _failed(c)), None)
    if failed is not None:
        raise ValueError(failed.message())


def _failed(c: _Check) -> bool:
    return bool(c.host[()]) if c.host is not None else bool(c.flag)


def forget() -> None:
    """Drop every pending check unread (a test starting afresh)."""
    _pending.clear()
