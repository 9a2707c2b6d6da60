"""What a training checkpoint holds beside the model: train_state.safetensors, and the
fingerprint of the numerics that a resumed run compares with its own.

The tensors are the AdamW moments (`m/<name>`, `v/<name>`); the metadata, all strings, are the
format, the step done, the step to stop at, the batch RNG's state, the optimizer's step counts
and hyperparameters, the run's settings and its numerics (JSON where not a number).
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["STATE_FORMAT", "save_state", "numerics_of"]

STATE_FORMAT = "nanonorm-train/2"


def save_state(out: Path, model, opt, rng, step: int, stop: int, settings: dict,
               numerics: dict | None = None, opt_state: dict | None = None) -> None:
    """One checkpoint unit: weights + config, and the training state beside them (the
    optimizer's, or `opt_state` already taken from it: a sharded optimizer gathers it)."""
    import numpy as np

    from ..backend import to_numpy
    from ..checkpoint import save

    state = opt.state_dict() if opt_state is None else opt_state
    tensors = {f"{prefix}/{n}": np.ascontiguousarray(to_numpy(a))
               for prefix in ("m", "v") for n, a in state[prefix].items()}
    optim = {k: v for k, v in state.items() if k not in ("m", "v")}
    meta = {"format": STATE_FORMAT, "step": str(step), "stop": str(stop),
            "rng": json.dumps(rng.bit_generator.state), "optim": json.dumps(optim),
            "settings": json.dumps(settings), "numerics": json.dumps(numerics or {})}
    save(model, out, train_state=(tensors, meta))


def numerics_of(model) -> dict:
    """Besides the saved state, what decides the bits of every step: the source of the ops,
    kernels, model and optimizer, which implementation each op runs, the libraries that
    compute, and the CPU (Numba compiles for it; reduction order follows its vector width).
    The thread count is not here: results do not depend on it."""
    import hashlib
    import importlib
    import platform

    import numpy as np

    from .. import dispatch

    kernels = "nanonorm.kernels.cuda" if model.device == "cuda" else "nanonorm.kernels.cpu"
    sources = hashlib.sha256()
    for name in ("nanonorm.backend", "nanonorm.functional", "nanonorm.gpt", "nanonorm.gpt_block",
                 "nanonorm.gpt_head", "nanonorm.gpt_config", "nanonorm.optim", "nanonorm.data",
                 "nanonorm.ops", kernels):
        try:
            module = importlib.import_module(name)
        except Exception:       # an implementation that cannot load: the table below says so
            continue
        files = (sorted(Path(module.__path__[0]).glob("*.py")) if hasattr(module, "__path__")
                 else [Path(module.__file__)])
        for file in files:
            sources.update(file.name.encode() + b"\0" + file.read_bytes())
    probe = model.parameters()["transformer.wte.weight"]    # dispatch goes by the array type
    versions = {"numpy": np.__version__}
    for dist in ("numba", "llvmlite") + (("cupy",) if model.device == "cuda" else ()):
        try:
            versions[dist] = importlib.import_module(dist).__version__
        except ImportError:
            pass
    try:
        import llvmlite.binding as llvm
        cpu = llvm.get_host_cpu_name()
    except ImportError:
        cpu = platform.processor()
    return {"source": sources.hexdigest()[:16],
            "implementations": {op: dispatch.implementation_for(op, probe)
                                for op in sorted(dispatch.kernels("reference"))},
            "libraries": versions, "cpu": f"{platform.machine()} {cpu}"}
