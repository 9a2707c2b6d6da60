"""Reading a unit: every file from one directory handle, each checked against the manifest.

The directory is opened once and every file relative to that handle, so all a reader gets comes
from one unit even while saves swap new ones in; a file that vanished because the unit was
retired under it, or a checksum that fails after the path was swapped, makes it start over (a
few times, then a clear error).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, TypeVar

from .atomic_dir_manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, parse_manifest, sha256_of

__all__ = ["ChecksumError", "read_unit", "Unit", "READ_ATTEMPTS"]

READ_ATTEMPTS = 20          # a reader starts over at most this often when units are swapped
T = TypeVar("T")


class ChecksumError(ValueError):
    """A file's bytes differ from what the unit's manifest recorded."""


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
        self._check(name, os.fstat(f.fileno()).st_size, lambda: sha256_of(f))

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
        try:
            with self.open(MANIFEST_NAME) as f:
                data = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            return None         # not written by write_unit: nothing to verify against
        files = parse_manifest(data)
        if files is None:
            raise ValueError(f"{str(self.root / MANIFEST_NAME)!r} is not a valid manifest; pass "
                             f"verify=False to read the checkpoint without checking it")
        return files
