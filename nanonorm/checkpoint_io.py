"""A checkpoint directory's files: written as one unit, read back validated.

`save` stages model.safetensors, config.json, the optional train_state.safetensors and a manifest
of their sha256 and swaps them in together (nanonorm.atomic_dir); `read_checkpoint` and
`read_train_state` read one consistent unit, checking config.json field by field and the
weights' header against it before any tensor is read. Nothing here knows the GPT class: the
model is built from what is read by `GPT.from_pretrained` (and `nanonorm.checkpoint.load`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .atomic_dir import MANIFEST_NAME, Unit, check_target, read_unit, write_unit
from .backend import to_numpy
from .checkpoint_config import CONFIG_NAME, hf_config, parse_config
from .gpt_config import GPTConfig, parameter_shapes
from .validate import boolean, short_repr

__all__ = ["save", "read_checkpoint", "read_train_state", "is_checkpoint", "check_writable",
           "resolve_dir", "atomic_write", "WEIGHTS_NAME", "CONFIG_NAME", "STATE_NAME",
           "MANIFEST_NAME"]

WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "train_state.safetensors"
UNIT_FILES = frozenset({WEIGHTS_NAME, CONFIG_NAME, STATE_NAME, MANIFEST_NAME})
MAX_CONFIG_BYTES = 1 << 20
MAX_LISTED = 3              # names listed in an error message before "and N more"
# attention-mask buffers stored by older transformers versions: not parameters
_MASK_BUFFER = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")
_FLOAT_DTYPES = ("F16", "F32", "F64")       # what NumPy can hold (not BF16)
# a snapshot name that refs/main may hold: one path component, no "." or ".."
_SNAPSHOT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


# writing ------------------------------------------------------------------------------------

def save(model, path, *, train_state=None) -> None:
    """Make `path` hold this model's checkpoint as one unit: model.safetensors, config.json,
    train_state.safetensors when `train_state` = (tensors: dict[str, ndarray], metadata:
    dict[str, str]) is given, and the manifest. Other files in `path` are kept; a previous
    checkpoint's files (its training state included) are replaced. Files honour the umask."""
    config = getattr(model, "config", None)
    if not isinstance(config, GPTConfig) or not callable(getattr(model, "parameters", None)):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    state = _checked_train_state(train_state)
    target = check_target(path)
    tensors = {n: np.ascontiguousarray(to_numpy(a)) for n, a in model.parameters().items()}
    text = json.dumps(hf_config(config), indent=2) + "\n"
    # "format": "pt" is what transformers checks for before it reads a safetensors file
    files = {WEIGHTS_NAME: lambda p: save_file(tensors, p, metadata={"format": "pt"}),
             CONFIG_NAME: lambda p: Path(p).write_text(text)}
    if state is not None:
        files[STATE_NAME] = lambda p: save_file(state[0], p, metadata=state[1])
    write_unit(target, files, UNIT_FILES)


def _checked_train_state(train_state):
    if train_state is None:
        return None
    if not isinstance(train_state, (tuple, list)) or len(train_state) != 2:
        raise TypeError("train_state must be None or a pair (tensors, metadata)")
    tensors, metadata = train_state
    if not isinstance(tensors, dict) or not all(isinstance(k, str) for k in tensors):
        raise TypeError("train_state's tensors must be a dict of str -> numpy.ndarray")
    bad = [k for k, a in tensors.items()
           if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf"]
    if bad:
        raise TypeError(f"train_state's tensors must be numeric numpy arrays: not "
                        f"{_listed(bad)}")
    if "__metadata__" in tensors:
        raise ValueError("train_state's tensors may not be named '__metadata__'")
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("train_state's metadata must be a dict of str -> str")
    return {k: np.ascontiguousarray(a) for k, a in tensors.items()}, dict(metadata)


def check_writable(path) -> None:
    """ValueError (TypeError for a non-path) saying why `path` cannot become a checkpoint
    directory: an existing file, an unwritable or missing-and-uncreatable directory, a mount
    point, the current directory. Creates and changes nothing."""
    check_target(path)


def is_checkpoint(path) -> bool:
    """Whether the directory `path` already holds a checkpoint (or a part of one)."""
    p = Path(os.fspath(path)).expanduser()
    return p.is_dir() and any(os.path.lexists(p / name) for name in UNIT_FILES)


def atomic_write(path, write: Callable[[str], None]) -> None:
    """Call write(tmp) on a new file beside `path` (mode from the umask), then rename it over
    `path`: readers see the old file or the new one. One file only: a checkpoint's files
    change together through save()."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# reading ------------------------------------------------------------------------------------

def resolve_dir(path) -> Path:
    """The directory holding config.json: `path` itself, or the snapshot a Hugging Face cache
    repository directory (`.../models--gpt2`) points to with refs/main, which must name a
    folder inside its snapshots/."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(os.fspath(path)).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    snapshots = path / "snapshots"
    if (path / CONFIG_NAME).exists() or not snapshots.is_dir():
        return path
    ref = path / "refs" / "main"
    if ref.is_file():
        with open(ref, "rb") as f:
            name = f.read(256).decode("utf-8", "replace").strip()
        if not _SNAPSHOT_REF.fullmatch(name):
            raise ValueError(f"{str(ref)!r} holds {short_repr(name)}, not a snapshot name (one "
                             f"folder inside {str(snapshots)!r})")
        snapshot = snapshots / name
        if not snapshot.is_dir():
            raise FileNotFoundError(f"{str(ref)!r} names snapshot {name!r}, which is not in "
                                    f"{str(snapshots)!r}")
        if snapshot.resolve().parent != snapshots.resolve():
            raise ValueError(f"snapshot {str(snapshot)!r} is a link out of {str(snapshots)!r}")
        return snapshot
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(found) != 1:
        raise FileNotFoundError(f"{str(path)!r} is a Hugging Face cache directory with "
                                f"{len(found)} snapshots and no refs/main; pass one snapshot")
    return found[0]


def read_checkpoint(path, dtype: str = "float32", *,
                    verify: bool = True) -> tuple[GPTConfig, dict[str, np.ndarray]]:
    """(config, host arrays under our names, cast to dtype), fully validated: config.json
    field by field, then the weights' header against it, then (with `verify`, when the
    directory has a manifest) each file's sha256, and only then the tensor data."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {short_repr(dtype)}")
    boolean("verify", verify)
    root = resolve_dir(path)
    return read_unit(root, lambda unit: _read_model(unit, dtype), verify=verify)


def _read_model(unit: Unit, dtype: str):
    config_file = str(unit.root / CONFIG_NAME)
    config = parse_config(unit.read_bytes(CONFIG_NAME, MAX_CONFIG_BYTES), config_file)
    with unit.open(WEIGHTS_NAME, " (only single-file safetensors checkpoints are read)") as f:
        file = unit.root / WEIGHTS_NAME
        with _opened(unit.path_of(f, WEIGHTS_NAME), file) as st:
            keys = _match_header(st, config, file)
            unit.check(WEIGHTS_NAME, f)
            return config, {name: _tensor(st, key, file).astype(dtype, copy=False)
                            for name, key in keys.items()}


def _match_header(st, config: GPTConfig, file) -> dict[str, str]:
    """Our name -> the file's key for each parameter, from the header alone (names, shapes,
    dtypes against parameter_shapes(config)); ValueError naming what does not fit."""
    expected = parameter_shapes(config)
    keys, unexpected = {}, []
    for key in st.keys():
        if _MASK_BUFFER.match(key):
            continue
        name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
        if name == "lm_head.weight" and config.tie_weights:
            continue            # a tied copy of wte that some writers store
        if name not in expected:
            unexpected.append(key)
            continue
        if name in keys:
            raise ValueError(f"{file}: tensor {key!r} appears under two names")
        header = st.get_slice(key)
        shape, dtype = tuple(header.get_shape()), header.get_dtype()
        if shape != expected[name]:
            raise ValueError(f"{file}: tensor {key!r} has shape {short_repr(shape)}, "
                             f"expected {expected[name]} from {CONFIG_NAME}")
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{file}: tensor {key!r} has dtype {dtype}, expected one of "
                             f"{_FLOAT_DTYPES}")
        keys[name] = key
    if unexpected:
        noun = "tensor" if len(unexpected) == 1 else "tensors"
        raise ValueError(f"{file}: unexpected {noun} {_listed(unexpected)} for this config")
    missing = [n for n in expected if n not in keys]
    if missing:
        raise ValueError(f"{file}: missing tensors {_listed(missing)}")
    return keys


def read_train_state(path, *, verify: bool = True) -> tuple[dict[str, np.ndarray],
                                                            dict[str, str]]:
    """(tensors, metadata) of path/train_state.safetensors, verified against the manifest;
    FileNotFoundError naming the file when the checkpoint has no training state."""
    boolean("verify", verify)
    root = resolve_dir(path)

    def read(unit: Unit):
        file = unit.root / STATE_NAME
        with unit.open(STATE_NAME) as f:
            unit.check(STATE_NAME, f)
            with _opened(unit.path_of(f, STATE_NAME), file) as st:
                tensors = {key: _tensor(st, key, file) for key in st.keys()}
                return tensors, dict(st.metadata() or {})
    return read_unit(root, read, verify=verify)


@contextlib.contextmanager
def _opened(path: str, file):
    """safe_open(path), its errors as OSError naming the file."""
    try:
        handle = safe_open(path, framework="np")
    except Exception as e:   # safetensors raises its own error types
        raise OSError(f"{file}: not a readable safetensors file ({short_repr(str(e), 200)})") \
            from None
    with handle as st:
        yield st


def _tensor(st, key: str, file) -> np.ndarray:
    try:
        return st.get_tensor(key)
    except Exception as e:
        raise OSError(f"{file}: tensor {key!r} could not be read ({short_repr(str(e), 200)})") \
            from None


def _listed(names: list) -> str:
    """"'a', 'b', 'c' and 7 more": a bounded list for an error message."""
    more = f" and {len(names) - MAX_LISTED:,} more" if len(names) > MAX_LISTED else ""
    return ", ".join(short_repr(n, 80) for n in names[:MAX_LISTED]) + more
