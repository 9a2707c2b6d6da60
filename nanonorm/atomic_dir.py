"""A directory that changes as one unit: each save builds a whole new directory and swaps it in.

Renaming files one by one cannot make several files change together (a kill between two renames
leaves a mix), so a writer stages every file of the unit in a hidden sibling directory, fsyncs
it, and exchanges the two names in one step, keeping the target's other entries (a user's
tokenizer files): `atomic_dir_write`, `atomic_dir_swap`. A manifest records each file's size and
sha256 (`atomic_dir_manifest`). A reader opens every file through one directory handle, so all
it reads comes from one unit, and starts over when the unit was swapped under it
(`atomic_dir_read`).

This module checks a target and is the public face of the four.
"""
from __future__ import annotations

import os
from pathlib import Path

from .atomic_dir_manifest import MANIFEST_NAME
from .atomic_dir_read import ChecksumError, Unit, read_unit
from .atomic_dir_write import STAGING, write_unit

__all__ = ["MANIFEST_NAME", "ChecksumError", "check_target", "write_unit", "read_unit", "Unit"]


def check_target(path) -> Path:
    """The absolute, symlink-resolved directory `path` names, if it can become a unit there;
    ValueError saying why not. Creates and changes nothing."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        given = Path(os.fspath(path)).expanduser()
        target = given.resolve()
    except (OSError, ValueError, RuntimeError) as e:   # NUL byte, symlink loop, ...
        raise ValueError(f"path {str(path)!r} cannot be resolved: {e}") from None
    shown = repr(str(path))
    if os.path.islink(given) and not target.exists():
        raise ValueError(f"path {shown} is a symlink to {str(target)!r}, which does not exist")
    if target.parent == target:
        raise ValueError(f"path {shown} is a filesystem root; use a directory inside it")
    if len(os.fsencode(STAGING.format(name=target.name))) + 40 > 255:
        raise ValueError(f"path {shown}: the name {target.name[:40]!r}... is too long")
    if os.path.lexists(target):
        if not target.is_dir():
            raise ValueError(f"path {shown} is an existing file, not a directory")
        if not os.access(target, os.R_OK | os.W_OK | os.X_OK):
            raise ValueError(f"path {shown} is a directory this process cannot write")
        if os.path.ismount(target):
            raise ValueError(f"path {shown} is a mount point; each save replaces the whole "
                             f"directory, so use a directory inside it")
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        cwd = None
    if cwd is not None and (cwd == target or target in cwd.parents):
        raise ValueError(f"path {shown} is or contains the current directory; each save "
                         f"replaces the whole directory, so save to a subdirectory")
    ancestor = target.parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"path {shown}: {str(ancestor)!r} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"path {shown}: the directory {str(ancestor)!r} is not writable")
    return target
