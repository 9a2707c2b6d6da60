"""Writing a unit: stage every file in a hidden sibling directory, swap it in, retire the old.

The staging directory is named `.<name>.nanonorm-<pid>-<random>` and flock-ed while in use, so a
later save deletes only the ones whose writers died (Windows has no flock: they are kept rather
than risk deleting a live writer's). The target's other entries (a user's tokenizer files) are
hard-linked into the staging directory before the swap, and whatever appears in the old
directory during the save is moved into the new one before the old one is deleted: nothing but
the unit's own files is ever removed.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from typing import Callable

from .atomic_dir_manifest import MANIFEST_NAME, manifest_text, sha256_of
from .atomic_dir_swap import swap

try:
    import fcntl
except ImportError:         # Windows
    fcntl = None

__all__ = ["write_unit", "STAGING", "PARTIAL_NAME"]

STAGING = ".{name}.nanonorm-"           # + "<pid>-<12 hex>", and "-old" for an aside unit
PARTIAL_NAME = ".nanonorm-partial"      # files being written, and their writers' temporaries


def write_unit(target: Path, files: dict[str, Callable[[str], None]], owned: frozenset) -> None:
    """Make `target` (from check_target) hold exactly `files` (name -> write(path)) plus a
    manifest, and the target's entries whose names are not in `owned`, all in one step."""
    owned = frozenset(owned) | {MANIFEST_NAME, PARTIAL_NAME}
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target, owned)
    staging, lock = _new_staging(target)
    old = None
    try:
        try:
            _stage(staging, files)
            if target.is_dir():
                os.chmod(staging, stat.S_IMODE(os.stat(target).st_mode))
                _link_tree(target, staging, owned)
            _fsync_dir(staging)
            old = swap(staging, target)
        except BaseException:
            if _is_ours(staging, lock):     # not swapped: links and our partial files only
                shutil.rmtree(staging, ignore_errors=True)
            elif os.path.isdir(staging):    # interrupted right after the exchange
                _retire(staging, target, owned)
            raise
        _fsync_dir(target.parent)
        if old is not None:
            _retire(old, target, owned)
    finally:
        os.close(lock)


def _stage(staging: Path, files: dict[str, Callable[[str], None]]) -> None:
    """Write each file, then the manifest of their sizes and sha256, into `staging`. Each is
    written inside a subdirectory and renamed out when complete: a kill leaves the partial file
    and the temporaries of its writer (safetensors' own .tmp*) where cleaning up finds them."""
    partial = staging / PARTIAL_NAME
    os.mkdir(partial, 0o777)
    mode = _umask_mode(partial)

    def put(name: str, write: Callable[[str], None]) -> dict:
        write(str(partial / name))
        os.chmod(partial / name, mode)      # safetensors writes 0600 whatever the umask
        digest = _fsync_and_digest(partial / name)
        os.rename(partial / name, staging / name)
        return digest

    manifest = {name: put(name, write) for name, write in files.items()}
    text = manifest_text(manifest)
    put(MANIFEST_NAME, lambda path: Path(path).write_text(text))
    os.rmdir(partial)


def _new_staging(target: Path) -> tuple[Path, int]:
    """A fresh, locked, empty sibling directory (mode from the umask) and its locked handle."""
    while True:
        staging = target.with_name(STAGING.format(name=target.name)
                                   + f"{os.getpid()}-{secrets.token_hex(6)}")
        try:
            os.mkdir(staging, 0o777)
        except FileExistsError:
            continue
        try:    # until it is locked, another save's cleanup may take it for stale
            fd = os.open(staging, os.O_RDONLY)
        except FileNotFoundError:
            continue
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_ours(staging, fd):
            return staging, fd
        os.close(fd)


def _umask_mode(directory: Path) -> int:
    """The mode a new file gets here (0o666 less the umask), read without os.umask(), which
    would change the process's umask for a moment under other threads."""
    probe = directory / ".mode-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
        os.unlink(probe)


def _is_ours(staging: Path, fd: int) -> bool:
    """Whether `staging` still names the directory open as `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(staging))
    except OSError:
        return False


def _remove_stale(target: Path, owned: frozenset) -> None:
    """Empty and remove the staging directories of writers that died (their lock is free)."""
    if fcntl is None:
        return
    pattern = re.compile(re.escape(STAGING.format(name=target.name)) + r"\d+-[0-9a-f]{12}(-old)?")
    for entry in os.scandir(target.parent):
        if not pattern.fullmatch(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if entry.name.endswith("-old") and not os.path.lexists(target):
                os.rename(entry.path, target)   # the fallback was killed between its renames
            else:
                _retire(Path(entry.path), target, owned)
        except OSError:     # BlockingIOError: a live writer holds it
            pass
        finally:
            os.close(fd)


def _link_tree(src: Path, dst: Path, owned: frozenset | None) -> None:
    """Mirror src's entries (other than `owned` names and their temporaries) into dst: files
    hard-linked (copied where linking is refused), directories recreated, symlinks copied."""
    for entry in os.scandir(src):
        if owned is not None and _is_owned(entry.name, owned):
            continue
        s, d = Path(entry.path), dst / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(s), d)
        elif entry.is_dir():
            os.mkdir(d, stat.S_IMODE(entry.stat().st_mode) | 0o700)
            _link_tree(s, d, None)
            os.chmod(d, stat.S_IMODE(entry.stat().st_mode))
        elif entry.is_file():
            try:
                os.link(s, d)
            except OSError:     # another filesystem under it, or protected_hardlinks
                shutil.copy2(s, d)
        # sockets, fifos, devices: left where they are; _retire moves them into the new unit


def _is_owned(name: str, owned: frozenset) -> bool:
    """A unit file, or a temporary atomic_write left for one (`.<name>.<random>.tmp`)."""
    if name in owned:
        return True
    return (name.startswith(".") and name.endswith(".tmp")
            and any(name.startswith(f".{o}.") for o in owned))


def _retire(old: Path, new: Path, owned: frozenset | None) -> None:
    """Empty `old` (a replaced unit, or a dead writer's staging directory) into `new`, then
    remove it: unit files are deleted, entries `new` holds as the same file are deleted, and
    anything else (a file added during the save) is moved into `new`, or left if `new` holds a
    different file of that name: never lost. Safe to run twice at once."""
    try:
        entries = list(os.scandir(old))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name == MANIFEST_NAME):   # manifest last
        src, dst = Path(entry.path), new / entry.name
        try:
            if owned is not None and _is_owned(entry.name, owned):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(src)
                else:
                    src.unlink()
            elif not os.path.lexists(dst):
                os.rename(src, dst)
            elif entry.is_dir(follow_symlinks=False) and not dst.is_symlink() and dst.is_dir():
                _retire(src, dst, None)
            elif _same_entry(src, dst):
                src.unlink()
        except OSError:
            pass
    try:
        old.rmdir()
    except OSError:
        pass


def _same_entry(a: Path, b: Path) -> bool:
    sa, sb = os.lstat(a), os.lstat(b)
    if os.path.samestat(sa, sb):
        return True
    if stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode):
        return os.readlink(a) == os.readlink(b)
    return (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)      # a copy2 of it
            and (sa.st_size, sa.st_mtime_ns) == (sb.st_size, sb.st_mtime_ns))


def _fsync_and_digest(path: Path) -> dict:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        return {"bytes": os.fstat(f.fileno()).st_size, "sha256": sha256_of(f)}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:     # some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
