"""One GPT-2 block, forward and backward: pre-LN causal self-attention, then a pre-LN MLP, each
added to the residual stream; and the KV cache that attention extends when decoding.

The block reads its parameters from the model's dict under `transformer.h.{i}.` and writes its
gradients into a dict under the same names; the two residual additions are visible here
(`x = x + a`, `dx = dx + dbranch`), not hidden in an op.
"""
from __future__ import annotations

from typing import NamedTuple

from . import functional as F
from .backend import Array
from .gpt_config import GPTConfig

__all__ = ["BlockCache", "KVCache", "block_forward", "block_backward"]


class BlockCache(NamedTuple):
    ln_1: object        # LayerNormCache of x (B, T, C)
    c_attn: object      # LinearCache (B, T, C) -> (B, T, 3C)
    attn: object        # AttentionCache, q k v (B, NH, T, hs)
    c_proj: object      # LinearCache (B, T, C) -> (B, T, C)
    ln_2: object
    c_fc: object        # LinearCache (B, T, C) -> (B, T, 4C)
    gelu: object        # BiasGeluCache: c_fc's output before its bias (B, T, 4C)
    mlp_proj: object    # LinearCache (B, T, 4C) -> (B, T, C)


class KVCache:
    """Keys and values of the positions seen so far, per layer: (B, NH, block_size, hs) buffers
    filled left to right, so decoding one token costs one new row per layer."""

    def __init__(self, xp, config: GPTConfig, batch: int, dtype, device=None):
        shape = (batch, config.n_head, config.block_size, config.head_size)
        self.k = [xp.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [xp.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.length = 0     # positions already stored

    def append(self, layer: int, k: Array, v: Array) -> tuple[Array, Array]:
        """Store k, v (B, NH, T, hs) after the cached ones; return all keys/values so far."""
        t0, t1 = self.length, self.length + k.shape[2]
        self.k[layer][:, :, t0:t1, :] = k
        self.v[layer][:, :, t0:t1, :] = v
        return self.k[layer][:, :, :t1, :], self.v[layer][:, :, :t1, :]   # (B, NH, S, hs)


def block_forward(xp, cfg: GPTConfig, p: dict, i: int, x: Array, kv: KVCache | None = None):
    """x (B, T, C) through block i, and the block's cache; with `kv`, attention also sees the
    cached positions, and this call's keys and values are stored after them."""
    pre = f"transformer.h.{i}."
    B, T, C = x.shape
    NH, hs = cfg.n_head, cfg.head_size
    h, ln1 = F.layer_norm_forward(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"],
                                  cfg.ln_eps)                           # (B, T, C)
    qkv, c_attn = F.linear_forward(h, p[pre + "attn.c_attn.weight"],
                                   p[pre + "attn.c_attn.bias"])         # (B, T, 3C)
    # columns are [q | k | v], each with its heads side by side
    qkv = xp.permute_dims(xp.reshape(qkv, (B, T, 3, NH, hs)), (2, 0, 3, 1, 4))  # (3,B,NH,T,hs)
    q, k, v = qkv[0, ...], qkv[1, ...], qkv[2, ...]
    if kv is not None:
        k, v = kv.append(i, k, v)                                       # (B, NH, S, hs)
    y, attn = F.scaled_dot_product_attention_forward(q, k, v, causal=True)  # (B,NH,T,hs)
    y = xp.reshape(xp.permute_dims(y, (0, 2, 1, 3)), (B, T, C))        # (B, T, C)
    a, c_proj = F.linear_forward(y, p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"])
    x = x + a                                                           # residual
    h, ln2 = F.layer_norm_forward(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"],
                                  cfg.ln_eps)
    f, c_fc = F.linear_forward(h, p[pre + "mlp.c_fc.weight"])          # (B, T, 4C)
    f, gelu = F.bias_gelu_forward(f, p[pre + "mlp.c_fc.bias"])          # bias in GELU's pass
    m, mlp_proj = F.linear_forward(f, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])
    x = x + m                                                           # residual
    return x, BlockCache(ln1, c_attn, attn, c_proj, ln2, c_fc, gelu, mlp_proj)


def block_backward(xp, cfg: GPTConfig, i: int, dx: Array, c: BlockCache, g: dict) -> Array:
    """The gradient of block i's input from that of its output dx (B, T, C); the parameters'
    gradients go into `g` under their names."""
    pre = f"transformer.h.{i}."
    B, T, C = dx.shape
    # MLP branch: x_out = x_mid + mlp(ln_2(x_mid))
    df, g[pre + "mlp.c_proj.weight"], g[pre + "mlp.c_proj.bias"] = \
        F.linear_backward(dx, c.mlp_proj)                               # (B, T, 4C)
    df, g[pre + "mlp.c_fc.bias"] = F.bias_gelu_backward(df, c.gelu)
    dh, g[pre + "mlp.c_fc.weight"], _ = F.linear_backward(df, c.c_fc)
    dbranch, g[pre + "ln_2.weight"], g[pre + "ln_2.bias"] = F.layer_norm_backward(dh, c.ln_2)
    dx = dx + dbranch                                                   # residual accumulation
    # attention branch: x_mid = x_in + c_proj(attn(ln_1(x_in)))
    dy, g[pre + "attn.c_proj.weight"], g[pre + "attn.c_proj.bias"] = \
        F.linear_backward(dx, c.c_proj)                                 # (B, T, C)
    NH = cfg.n_head
    dy = xp.permute_dims(xp.reshape(dy, (B, T, NH, C // NH)), (0, 2, 1, 3))  # (B,NH,T,hs)
    dq, dk, dv = F.scaled_dot_product_attention_backward(dy, c.attn)
    dqkv = xp.reshape(xp.permute_dims(xp.stack((dq, dk, dv)), (1, 3, 0, 2, 4)),
                      (B, T, 3 * C))                                    # (B, T, 3C)
    dh, g[pre + "attn.c_attn.weight"], g[pre + "attn.c_attn.bias"] = \
        F.linear_backward(dqkv, c.c_attn)
    dbranch, g[pre + "ln_1.weight"], g[pre + "ln_1.bias"] = F.layer_norm_backward(dh, c.ln_1)
    return dx + dbranch                                                 # residual accumulation
