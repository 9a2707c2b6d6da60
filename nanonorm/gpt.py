"""GPT-2, forward and backward by hand, composed from `nanonorm.functional`.

Every layer is a functional `*_forward` call whose cache the model keeps, and the backward walks
them in reverse; the only things the model adds itself are visible here and in
`nanonorm.gpt_block`: the residual stream's accumulation (`dx = dx + ...`), the head split of the
fused c_attn, the sum over the batch for the position embedding, and the tied embedding's two
gradients. Parameters carry the Hugging Face GPT-2 names, so loading a checkpoint needs no
renaming.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import device_checks
from . import functional as F
from . import validate as check
from .backend import (Array, array_namespace, backend_name, get_namespace, normal,
                      scatter_add_rows)
from .gpt_block import BlockCache, KVCache, block_backward, block_forward
from .gpt_config import GPTConfig, parameter_shapes
from .gpt_head import loss_and_head_gradient, scaled

__all__ = ["GPT", "GPTConfig", "KVCache"]

DTYPES = ("float32", "float64")
DEVICES = {"cpu": "numpy", "cuda": "cupy"}
INIT_STD = 0.02


class ModelCache(NamedTuple):
    wte: object         # EmbeddingCache of idx (B, T)
    wpe: object         # EmbeddingCache of positions (T,)
    blocks: list        # BlockCache per layer; with recompute, each block's input (B, T, C)
    ln_f: object
    head: object        # LinearCache (B, T, C) -> (B, T, V), or the fused head's HeadGradient
    loss: object        # CrossEntropyCache; None with the fused head


class GPT:
    """GPT-2: learned positions, pre-LN blocks, causal multi-head attention, tanh-GELU MLP.

    recompute=True keeps only each block's input between forward and backward and runs the
    block's forward again in the backward (activation checkpointing): about a third more
    compute, a fraction of the memory, the same gradients bit for bit (the kernels are
    deterministic). The parameters must not change between the two.
    """

    def __init__(self, config: GPTConfig, *, seed: int = 0, dtype: str = "float32",
                 device: str = "cpu", recompute: bool = False):
        self._setup(config, dtype, device)
        self.recompute = recompute
        if not check.is_integer(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        # GPT-2's init: N(0, 0.02); the projections that write into the residual stream are
        # scaled by 1/sqrt(2·n_layer) (two per block) so the stream's variance stays O(1).
        rng = np.random.default_rng(seed)
        proj_std = INIT_STD / math.sqrt(2 * config.n_layer)
        xp, kw = self.xp, dict(dtype=self._xp_dtype, device=self._xp_device)
        self._params: dict[str, Array] = {}
        for name, shape in parameter_shapes(config).items():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                self._params[name] = xp.ones(shape, **kw)
            elif name.endswith(".bias"):
                self._params[name] = xp.zeros(shape, **kw)
            else:
                std = proj_std if name.endswith("c_proj.weight") else INIT_STD
                self._params[name] = normal(shape, std, rng=rng, like_xp=xp, dtype=self.dtype,
                                            device=self._xp_device)

    def _setup(self, config: GPTConfig, dtype, device) -> None:
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        name = getattr(dtype, "__name__", None) or getattr(dtype, "name", None) or dtype
        if name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {tuple(DEVICES)}, got {device!r}")
        self.config, self.dtype, self.device = config, name, device
        try:
            self.xp = get_namespace(DEVICES[device])
        except Exception as e:   # no CuPy, no driver or no GPU
            raise RuntimeError(f"device={device!r} is unavailable here: {e}") from e
        self._xp_dtype = getattr(self.xp, name)
        self._xp_device = None   # the current device of the backend
        self._cache: ModelCache | None = None
        self._recompute = False

    @property
    def recompute(self) -> bool:
        """Recompute each block's activations in the backward instead of keeping them."""
        return self._recompute

    @recompute.setter
    def recompute(self, value: bool) -> None:
        self._recompute = check.boolean("recompute", value)

    # parameters ----------------------------------------------------------------------------

    def parameters(self) -> dict[str, Array]:
        """The live name → array dict; optimisers update these arrays in place."""
        return self._params

    def state_dict(self) -> dict[str, Array]:
        """A new dict holding the parameter arrays themselves (not copies)."""
        return dict(self._params)

    def load_state_dict(self, state: dict) -> None:
        """Copy `state` into the parameters in place. Names and shapes are all validated
        before anything is written, so a bad state leaves the model unchanged."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of name -> array, got {type(state).__name__}")
        missing = [k for k in self._params if k not in state]
        unexpected = [k for k in state if k not in self._params]
        if missing or unexpected:
            listed = lambda names: [repr(n)[:80] for n in names[:3]] + (
                [f"and {len(names) - 3} more"] if len(names) > 3 else [])
            raise ValueError(f"state_dict mismatch: missing {listed(missing)}, "
                             f"unexpected {listed(unexpected)}")
        staged = {}
        for name, value in state.items():
            value = check.like_target(f"state {name!r}", value, self._params[name])
            xp = array_namespace(value, names=(name,))
            check.floating(xp, name, value)
            staged[name] = self.xp.asarray(value, dtype=self._xp_dtype, device=self._xp_device)
        for name, value in staged.items():
            self._params[name][...] = value

    def num_parameters(self) -> int:
        """Parameters actually allocated (compare with config.num_parameters())."""
        return sum(math.prod(p.shape) for p in self._params.values())

    def _lm_head(self) -> Array:
        """The unembedding in linear's (in, out) = (C, V) layout: a transposed view, no copy."""
        w = self._params["transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"]
        return self.xp.matrix_transpose(w)                              # (C, V)

    # forward / backward --------------------------------------------------------------------

    def forward(self, idx, targets=None, *, return_logits: bool = True):
        """logits (B, T, V) and the mean cross-entropy against targets (B, T) (None if absent).

        With targets the caches are kept for `backward`; without, nothing is kept.
        return_logits=False (with targets: a training step) returns (None, loss) and never
        holds the (B, T, V) logits or their gradient whole: the head and the loss run in
        blocks of rows, their backward included (nanonorm.gpt_head).
        """
        check.boolean("return_logits", return_logits)
        if not return_logits and targets is None:
            raise ValueError("return_logits=False needs targets: without them the logits are "
                             "the only result")
        idx = self.token_ids("idx", idx)
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"idx has {T} positions but block_size is {self.config.block_size}")
        if targets is not None:
            targets = self.token_ids("targets", targets)
            check.shape("targets", targets, idx.shape, " (the shape of idx)")
        self._cache = None
        with device_checks.trusted():       # the ids are checked: the ops need not again
            return self._forward(idx, targets, return_logits)

    def _forward(self, idx: Array, targets: Array | None, return_logits: bool):
        x, wte_c, wpe_c = self._embed(idx, 0)                           # (B, T, C)
        blocks = []                         # what the backward needs: nothing without targets
        for i in range(self.config.n_layer):
            x_in = x
            x, c = block_forward(self.xp, self.config, self._params, i, x)
            if targets is not None:
                blocks.append(x_in if self.recompute else c)
            del c, x_in                     # otherwise freed before the next block
        if not return_logits:
            h, lnf_c = self._final_norm(x)
            loss, head_g = loss_and_head_gradient(self.xp, h, self._lm_head(), targets)
            self._cache = ModelCache(wte_c, wpe_c, blocks, lnf_c, head_g, None)
            return None, loss
        logits, lnf_c, head_c = self._head(x)                           # (B, T, V)
        if targets is None:
            return logits, None
        loss, loss_c = F.cross_entropy_forward(logits, targets)         # 0-d
        self._cache = ModelCache(wte_c, wpe_c, blocks, lnf_c, head_c, loss_c)
        return logits, loss

    def backward(self, dloss=1.0, *, on_ready=None) -> dict[str, Array]:
        """Gradients of the last forward's loss (times dloss), keyed like state_dict().

        on_ready(grads, names), if given, is called as soon as the gradients of `names` are
        final (ln_f's, then each block's from the last, then the embeddings'): a data-parallel
        run starts sending them while the backward goes on (nanonorm.distributed)."""
        if on_ready is not None and not callable(on_ready):
            raise TypeError(f"on_ready must be callable or None, got {type(on_ready).__name__}")
        if self._cache is None:
            raise RuntimeError("backward needs a forward(idx, targets) first (once per forward)")
        c, self._cache = self._cache, None          # free the activations as soon as possible
        xp, g = self.xp, {}
        ready = (lambda names: on_ready(g, names)) if on_ready else (lambda names: None)
        if c.loss is None:                          # the fused head: run in the forward
            check.scalar_gradient("dloss", dloss, c.head.dx, "the loss")
            dx, dhead = scaled(c.head, dloss, xp)                       # (B, T, C), (C, V)
        else:
            dlogits = F.cross_entropy_backward(dloss, c.loss)           # (B, T, V)
            dx, dhead, _ = F.linear_backward(dlogits, c.head)           # (B, T, C), (C, V)
            del dlogits
        dx, g["transformer.ln_f.weight"], g["transformer.ln_f.bias"] = \
            F.layer_norm_backward(dx, c.ln_f)
        ready(["transformer.ln_f.weight", "transformer.ln_f.bias"])
        blocks = c.blocks
        for i in reversed(range(self.config.n_layer)):
            block = blocks.pop()                    # its activations go when it is done
            if not isinstance(block, BlockCache):   # recompute: the block's input was kept
                _, block = block_forward(xp, self.config, self._params, i, block)
            dx = block_backward(xp, self.config, i, dx, block, g)
            del block
            ready([n for n in self._params if n.startswith(f"transformer.h.{i}.")])
        # positions are shared by every sequence of the batch: their gradient sums over B
        g["transformer.wpe.weight"] = F.embedding_backward(xp.sum(dx, axis=0), c.wpe)
        if self.config.tie_weights:
            # one matrix, two uses: the unembedding's gradient (dhead has the layout of the
            # transposed view wteᵀ, so dheadᵀ is a fresh contiguous (V, C) array) plus the
            # embedding's, scattered into it in place: no (V, C) zeros, no (V, C) sum
            g["transformer.wte.weight"] = scatter_add_rows(
                xp.matrix_transpose(dhead), c.wte.idx, xp.reshape(dx, (-1, dx.shape[-1])))
        else:
            g["transformer.wte.weight"] = F.embedding_backward(dx, c.wte)   # (V, C)
            g["lm_head.weight"] = xp.matrix_transpose(dhead)            # (V, C)
        ready([n for n in self._params
               if not n.startswith(("transformer.h.", "transformer.ln_f."))])  # embeddings
        return {name: g[name] for name in self._params}

    def _embed(self, idx: Array, start: int):
        T = idx.shape[1]
        pos = self.xp.arange(start, start + T, device=self._xp_device)  # (T,)
        tok, wte_c = F.embedding_forward(idx, self._params["transformer.wte.weight"])  # (B,T,C)
        pe, wpe_c = F.embedding_forward(pos, self._params["transformer.wpe.weight"])   # (T, C)
        return tok + pe, wte_c, wpe_c

    def _final_norm(self, x: Array):
        p = self._params
        return F.layer_norm_forward(x, (self.config.n_embd,), p["transformer.ln_f.weight"],
                                    p["transformer.ln_f.bias"], self.config.ln_eps)

    def _head(self, x: Array):
        h, lnf_c = self._final_norm(x)
        logits, head_c = F.linear_forward(h, self._lm_head())           # (B, T, V)
        return logits, lnf_c, head_c

    # incremental decoding ------------------------------------------------------------------

    def new_kv_cache(self, batch: int) -> KVCache:
        return KVCache(self.xp, self.config, batch, self._xp_dtype, self._xp_device)

    def forward_kv(self, idx, kv: KVCache | None = None):
        """Logits (B, V) of the last of idx's positions, given the keys/values in `kv` of the
        positions before them (a fresh cache when None); kv is extended in place. Equal to
        forward(all ids so far)[0][:, -1] up to rounding."""
        idx = self.token_ids("idx", idx)
        kv = self.new_kv_cache(idx.shape[0]) if kv is None else kv
        if kv.length + idx.shape[1] > self.config.block_size:
            raise ValueError(f"the KV cache holds {kv.length} positions; {idx.shape[1]} more "
                             f"exceed block_size {self.config.block_size}")
        if kv.k[0].shape[0] != idx.shape[0]:
            raise ValueError(f"idx has batch {idx.shape[0]} but the KV cache {kv.k[0].shape[0]}")
        with device_checks.trusted():
            x, _, _ = self._embed(idx, kv.length)                       # (B, T, C)
            for i in range(self.config.n_layer):
                x, _ = block_forward(self.xp, self.config, self._params, i, x, kv)
        kv.length += idx.shape[1]
        logits, _, _ = self._head(x[:, -1:, :])                         # (B, 1, V)
        return logits[:, 0, :], kv

    def generate(self, idx, max_new_tokens: int, *, temperature: float = 1.0, top_k=None,
                 top_p=None, seed=None):
        """idx extended by max_new_tokens sampled ids; see nanonorm.generate.generate."""
        from .generate import generate
        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed)

    # checkpoints and training helpers ------------------------------------------------------

    def save(self, path) -> None:
        """Make `path` a checkpoint directory in the Hugging Face GPT-2 layout
        (model.safetensors + config.json, with a manifest of their sha256), replaced as one
        unit: see nanonorm.checkpoint.save."""
        from .checkpoint_io import save
        save(self, path)

    @classmethod
    def from_pretrained(cls, path, *, dtype: str = "float32", device: str = "cpu",
                        verify: bool = True) -> "GPT":
        """Load a GPT-2 checkpoint directory (ours, save_pretrained's, the original gpt2
        upload's bare names, or a local Hugging Face cache directory). A checkpoint with a
        manifest is checked against its sha256 first; verify=False skips that."""
        from .checkpoint_io import read_checkpoint
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {check.short_repr(dtype)}")
        config, arrays = read_checkpoint(path, dtype, verify=verify)
        return cls._from_arrays(config, arrays, dtype=dtype, device=device)

    @classmethod
    def _from_arrays(cls, config: GPTConfig, arrays: dict, *, dtype, device) -> "GPT":
        """A model holding host arrays already validated against parameter_shapes(config)."""
        model = cls.__new__(cls)
        model._setup(config, dtype, device)
        xp, kw = model.xp, dict(dtype=model._xp_dtype, device=model._xp_device)
        model._params = {name: xp.asarray(arrays[name], **kw) for name in parameter_shapes(config)}
        return model

    def configure_optimizer(self, *, lr: float = 6e-4, weight_decay: float = 0.1,
                            betas=(0.9, 0.95), eps: float = 1e-8):
        """AdamW that decays the 2-D weights only (not biases, LayerNorm gains or shifts)."""
        from .optim import AdamW
        no_decay = {n for n, p in self._params.items() if p.ndim < 2}
        return AdamW(self._params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                     no_decay=no_decay)

    def drop_cache(self) -> None:
        """Forget the last forward's activations when no backward will follow (an evaluation
        with targets): their memory is freed now, not at the next forward."""
        self._cache = None

    def token_ids(self, name: str, ids) -> Array:
        """Token ids as an integer (B, T) array of the model's library, in [0, vocab_size);
        errors name them `name`."""
        if isinstance(ids, (list, tuple)):
            ids = np.asarray(ids)
        xp = array_namespace(ids, names=(name,))
        upload = backend_name(ids) != backend_name(self._params["transformer.wte.weight"])
        if upload and backend_name(ids) != "numpy":
            raise TypeError(f"{name} is a {backend_name(ids)} array but the model runs on "
                            f"{self.device}; pass NumPy ids or ids on the model's device")
        check.integer(xp, name, ids)
        if ids.ndim != 2:
            raise ValueError(f"{name} must have shape (batch, positions), got {tuple(ids.shape)}")
        if ids.shape[1] == 0:
            raise ValueError(f"{name} must hold at least one position")
        # host ids are checked on the host, before the upload (no device read); ids already
        # on the device are checked there (nanonorm.device_checks)
        check.index_range(xp, name, ids, self.config.vocab_size, "token ids below vocab_size")
        return self.xp.asarray(ids, device=self._xp_device) if upload else ids

    def __repr__(self) -> str:
        return (f"GPT({self.config}, dtype={self.dtype!r}, device={self.device!r}, "
                f"parameters={self.num_parameters():,})")
