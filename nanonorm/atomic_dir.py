"""A directory that changes as one unit: each save builds a whole new directory and swaps it in.

Renaming files one by one cannot make several files change together (a kill between two renames
leaves a mix), so a writer stages every file of the unit in a hidden sibling directory, fsyncs
it, and exchanges the two names in one step (Linux `renameat2(RENAME_EXCHANGE)`; a plain rename
when the target does not exist yet). The target's other entries (a user's tokenizer files) are
hard-linked into the staging directory first, and anything that appears in the old directory
during the save is moved into the new one before the old one is deleted: nothing but the
unit's own files is ever removed. A manifest records each file's size and sha256.

A reader opens the directory once and every file relative to that handle, so all it reads comes
from one unit; a file that vanished because the unit was retired under it, or a checksum that
fails after the path was swapped, makes it start over (a few times, then a clear error).

A staging directory carries its writer's pid and is flock-ed while in use; a later save deletes
the unlocked ones that earlier kills left. Where `renameat2` is missing (not Linux, or a
filesystem that refuses the exchange) the fallback renames the old directory aside and the new
one in: for that instant the path is missing (readers retry), and a kill right then leaves the
previous unit under the hidden `.<name>.nanonorm-*-old` name until the next save restores it
before it begins. Without `flock` (Windows) stale staging directories are kept rather than risk
deleting a live writer's.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import Callable, TypeVar

try:
    import fcntl
except ImportError:         # Windows
    fcntl = None

__all__ = ["MANIFEST_NAME", "ChecksumError", "check_target", "write_unit", "read_unit", "Unit"]

MANIFEST_NAME = "nanonorm-manifest.json"
PARTIAL_NAME = ".nanonorm-partial"      # files being written, and their writers' temporaries
MANIFEST_FORMAT = "nanonorm-unit/1"
MAX_MANIFEST_BYTES = 1 << 20
READ_ATTEMPTS = 20          # a reader starts over at most this often when units are swapped
_STAGING = ".{name}.nanonorm-"
_CHUNK = 1 << 20
_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2
T = TypeVar("T")


class ChecksumError(ValueError):
    """A file's bytes differ from what the unit's manifest recorded."""


# the target ---------------------------------------------------------------------------------

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
    if len(os.fsencode(_STAGING.format(name=target.name))) + 40 > 255:
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


# writing ------------------------------------------------------------------------------------

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
            old = _swap(staging, target)
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
    text = json.dumps({"format": MANIFEST_FORMAT, "files": manifest}, indent=1) + "\n"
    put(MANIFEST_NAME, lambda path: Path(path).write_text(text))
    os.rmdir(partial)


def _new_staging(target: Path) -> tuple[Path, int]:
    """A fresh, locked, empty sibling directory (mode from the umask) and its locked handle."""
    while True:
        staging = target.with_name(_STAGING.format(name=target.name)
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
    pattern = re.compile(re.escape(_STAGING.format(name=target.name)) + r"\d+-[0-9a-f]{12}(-old)?")
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


def _swap(new: Path, target: Path) -> Path | None:
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
    pass


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
        return {"bytes": os.fstat(f.fileno()).st_size, "sha256": _sha256(f)}


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


def _sha256(f) -> str:
    h, buf = hashlib.sha256(), bytearray(_CHUNK)
    view = memoryview(buf)
    f.seek(0)
    while n := f.readinto(buf):
        h.update(view[:n])
    f.seek(0)
    return h.hexdigest()


# reading ------------------------------------------------------------------------------------

def read_unit(root: Path, read: Callable[["Unit"], T], *, verify: bool) -> T:
    """read(unit) on one consistent unit at `root`, starting over when it was swapped away."""
    for _ in range(READ_ATTEMPTS):
        unit = None
        try:
            unit = Unit(root, verify)
            return read(unit)
        except (FileNotFoundError, ChecksumError):
            if unit is None or not unit.replaced():
                raise
        finally:
            if unit is not None:
                unit.close()
    raise OSError(f"{str(root)!r} was replaced {READ_ATTEMPTS} times while being read; "
                  f"stop the process saving into it, or read a copy")


class Unit:
    """One directory's files as they were when it was opened: every open goes through the
    directory handle (where the OS allows), and with `verify` through the manifest, if any."""

    def __init__(self, root: Path, verify: bool):
        self.root = Path(root)
        self._fd = None
        try:
            if os.open in os.supports_dir_fd:
                self._fd = os.open(self.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                self._stat = os.fstat(self._fd)
            else:
                self._stat = os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(f"checkpoint directory {str(self.root)!r} does not exist")
        try:
            self.manifest = self._read_manifest() if verify else None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def replaced(self) -> bool:
        """Whether `root` names another directory now than when this unit was opened."""
        try:
            return not os.path.samestat(self._stat, os.stat(self.root))
        except OSError:
            return True

    def open(self, name: str, missing: str = ""):
        """The file `name` of this unit, opened for binary reading."""
        try:
            if self._fd is not None:
                return os.fdopen(os.open(name, os.O_RDONLY, dir_fd=self._fd), "rb")
            return open(self.root / name, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"{str(self.root / name)!r} not found{missing}") from None

    def path_of(self, f, name: str) -> str:
        """A path that opens exactly the file object `f` (by its descriptor where possible)."""
        by_fd = f"/proc/self/fd/{f.fileno()}"
        return by_fd if self._fd is not None and os.path.exists(by_fd) else str(self.root / name)

    def read_bytes(self, name: str, limit: int) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{str(self.root / name)!r} is larger than {limit:,} bytes")
        self._check(name, len(data), lambda: hashlib.sha256(data).hexdigest())
        return data

    def check(self, name: str, f) -> None:
        """Compare the open file `f` with the manifest (when verifying and there is one)."""
        self._check(name, os.fstat(f.fileno()).st_size, lambda: _sha256(f))

    def _check(self, name: str, size: int, digest: Callable[[], str]) -> None:
        if self.manifest is None:
            return
        shown = repr(str(self.root / name))
        skip = "; pass verify=False to read it anyway"
        if name not in self.manifest:
            raise ValueError(f"{shown} is not part of the unit recorded in {MANIFEST_NAME} "
                             f"(written separately?){skip}")
        want = self.manifest[name]
        if size != want["bytes"]:
            raise ChecksumError(f"{shown} has {size:,} bytes, but {MANIFEST_NAME} recorded "
                                f"{want['bytes']:,}: the file is damaged or was replaced{skip}")
        if digest() != want["sha256"]:
            raise ChecksumError(f"{shown} does not match its sha256 in {MANIFEST_NAME}: the file "
                                f"is damaged or was replaced{skip}")

    def _read_manifest(self) -> dict | None:
        shown = repr(str(self.root / MANIFEST_NAME))
        try:
            with self.open(MANIFEST_NAME) as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return None         # not written by write_unit: nothing to verify against
        try:
            doc = json.loads(data)
            files = doc["files"]
            ok = (doc.get("format") == MANIFEST_FORMAT and isinstance(files, dict)
                  and len(data) <= MAX_MANIFEST_BYTES
                  and all(isinstance(v, dict) and type(v.get("bytes")) is int
                          and isinstance(v.get("sha256"), str) and len(v["sha256"]) == 64
                          for v in files.values()))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            ok = False
        if not ok:
            raise ValueError(f"{shown} is not a valid manifest; pass verify=False to read the "
                             f"checkpoint without checking it")
        return files
