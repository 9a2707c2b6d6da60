"""Putting a staged directory at its target in one step: Linux `renameat2(RENAME_EXCHANGE)`
exchanges the two names atomically (`RENAME_NOREPLACE` when the target does not exist yet).

Where renameat2 is missing (not Linux, an old glibc, a filesystem that refuses the exchange) the
fallback renames the old directory aside and the new one in: for that instant the path is
missing (readers retry), and a kill right then leaves the old unit under the `-old` name, which
the next save restores before it begins (see nanonorm.atomic_dir_write).
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys
from pathlib import Path

__all__ = ["swap"]

_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2


def swap(new: Path, target: Path) -> Path | None:
    """Put `new` at `target` in one step; return the path now holding the old directory."""
    while True:
        try:
            _renameat2(new, target, _RENAME_EXCHANGE)
            return new
        except FileNotFoundError:
            if not os.path.exists(new):
                raise
            try:
                _renameat2(new, target, _RENAME_NOREPLACE)
                return None
            except FileExistsError:     # another writer created it meanwhile: exchange
                continue
            except _Unsupported:
                pass
        except _Unsupported:
            pass
        try:    # fallback: a missing target is renamed into; an existing one is moved aside
            os.rename(new, target)
            return None
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        aside = new.with_name(new.name + "-old")
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(aside, target)
            raise
        return aside


class _Unsupported(OSError):
    """No renameat2 here, or no exchange on this filesystem: take the fallback."""


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    fn = _libc_renameat2()
    if fn is None:
        raise _Unsupported("renameat2 is not available")
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise _Unsupported(code, os.strerror(code))
    raise OSError(code, os.strerror(code), str(src), None, str(dst))


_RENAMEAT2: list = []


def _libc_renameat2():
    """glibc's renameat2 (2.28+) through ctypes, or None elsewhere."""
    if not _RENAMEAT2:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                               ctypes.c_uint)
                fn.restype = ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _RENAMEAT2.append(fn)
    return _RENAMEAT2[0]
