"""A unit's manifest: each file's size and sha256, written by the saver after the files and
read by a reader, who checks each file against it before trusting its bytes."""
from __future__ import annotations

import hashlib
import json

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "MAX_MANIFEST_BYTES", "sha256_of",
           "manifest_text", "parse_manifest"]

MANIFEST_NAME = "nanonorm-manifest.json"
MANIFEST_FORMAT = "nanonorm-unit/1"
MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 20


def sha256_of(f) -> str:
    """The sha256 of the whole open binary file `f`, read in chunks; f is left at its start."""
    h, buf = hashlib.sha256(), bytearray(_CHUNK)
    view = memoryview(buf)
    f.seek(0)
    while n := f.readinto(buf):
        h.update(view[:n])
    f.seek(0)
    return h.hexdigest()


def manifest_text(files: dict[str, dict]) -> str:
    """The manifest of `files`: name -> {"bytes": size, "sha256": hex digest}."""
    return json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1) + "\n"


def parse_manifest(data: bytes) -> dict | None:
    """The name -> {"bytes", "sha256"} table a manifest's bytes record, or None when they are
    not a manifest of this format (too large, not JSON, a field of the wrong type)."""
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
    return files if ok else None
