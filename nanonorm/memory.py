"""Keep freed memory in the process, so a training step reuses its pages instead of faulting.

A training step allocates and frees all of its activations and gradients. With glibc's default
policy, the heap's freed top is returned to the OS, and every step faults in fresh pages again
and pays for it in system time (measured figures: docs/benchmarks.md). `keep_freed_memory()`
makes the next step reuse those pages. The price: the process keeps its peak heap instead of
shrinking after a step.

This is a process-wide allocator setting, so nothing calls it on import; the `nanonorm` CLI
commands that train or time a model call it, and a training script can. Before a phase that
needs the memory elsewhere (a child process, a larger model), `release_freed_memory()` hands
what is free back to the OS.
"""
from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_MAX = 32 << 20     # glibc's ceiling on 64-bit: larger blocks are always mmapped
TOP_PAD = 1 << 30                 # grow the heap in steps this large
TRIM_NEVER = 2**31 - 1            # a freed top this large is kept (mallopt takes a C int)


def _glibc_function(name: str):
    """glibc's function `name` through ctypes, or None (not Linux, no glibc, or no such
    function: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse; True if it took every setting,
    False where there is no glibc (macOS, musl, Windows: nothing changes). An allocator
    preloaded in glibc's place (jemalloc, tcmalloc via LD_PRELOAD) ignores it."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # a fixed mmap threshold also stops glibc from moving it (and the trim threshold) itself
    taken = [mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, TRIM_NEVER),
        (M_TOP_PAD, TOP_PAD))]
    return all(taken)


def release_freed_memory() -> bool:
    """Return the free memory of glibc's heap to the OS now (malloc_trim), whatever
    `keep_freed_memory` asked for; True if glibc released any. Python's cycles are collected
    first, so arrays only they kept alive are freed too."""
    import gc
    gc.collect()
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return trim(0) == 1
