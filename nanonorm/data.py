"""Data for byte-level language models: a tokenizer, an offline corpus, random batches.

The tokenizer maps text to its UTF-8 bytes (vocabulary 256, nothing to download). The default
corpus is the Python standard library's own source (`*.py` directly under the stdlib
directory, sorted by name), which every machine with Python has offline; a given Python
version therefore always yields the same corpus.
"""
from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np

from .backend import to_numpy

__all__ = ["VOCAB_SIZE", "encode", "decode", "stdlib_corpus", "load_corpus", "split",
           "get_batch", "fingerprint"]

VOCAB_SIZE = 256
DEFAULT_CORPUS_BYTES = 4_000_000


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of text as token ids, uint8 (T,)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(ids) -> str:
    """Text from byte ids (any array library, any integer dtype); broken UTF-8 becomes �."""
    host = np.asarray(to_numpy(ids) if hasattr(ids, "shape") else ids)
    if host.size and (host.min() < 0 or host.max() >= VOCAB_SIZE):
        raise ValueError(f"ids must lie in [0, {VOCAB_SIZE}) for the byte tokenizer")
    return host.astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def stdlib_corpus(max_bytes: int = DEFAULT_CORPUS_BYTES) -> np.ndarray:
    """The standard library's top-level source files, in name order, up to max_bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(root.glob("*.py")):
        if size >= max_bytes:
            break
        chunk = path.read_bytes()[: max_bytes - size]
        parts.append(chunk)
        size += len(chunk)
    if not parts:
        raise OSError(f"no Python source files found under {str(root)!r}")
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy()


def load_corpus(path=None, max_bytes: int = DEFAULT_CORPUS_BYTES) -> np.ndarray:
    """Byte ids (N,) uint8 of a text file, or of the stdlib corpus when path is None."""
    if path is None:
        return stdlib_corpus(max_bytes)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file {str(path)!r} does not exist")
    if not path.is_file():
        raise OSError(f"corpus {str(path)!r} is not a regular file")
    return np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()


def fingerprint(data: np.ndarray) -> str:
    """A short hash of a corpus, stored in checkpoints so a resume uses the same data."""
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def split(data: np.ndarray, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the last val_fraction of the corpus is held out."""
    n = int(len(data) * (1.0 - val_fraction))
    return data[:n], data[n:]


def get_batch(data: np.ndarray, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random windows: x (B, T) int64 and the next-byte targets y (B, T)."""
    if len(data) < block_size + 1:
        raise ValueError(f"the corpus has {len(data)} tokens; block_size {block_size} needs at "
                         f"least {block_size + 1}")
    starts = rng.integers(0, len(data) - block_size, size=batch_size)   # (B,)
    offsets = starts[:, None] + np.arange(block_size + 1)                # (B, T+1)
    window = data[offsets].astype(np.int64)
    return window[:, :-1], window[:, 1:]
