"""GPT-2's loss and gradients with its LayerNorms kept or removed (study 9).

`nanonorm.GPT` always normalises, so the variant without LayerNorm is composed here from the
same `nanonorm.functional` calls as `GPT.forward`/`GPT.backward`, in the same order, on the
model's own parameter dict: with `layer_norm=True` it gives GPT's loss and gradients (a test
checks it), with `layer_norm=False` every ln_1, ln_2 and ln_f is the identity and their γ, β
get no gradient. Freezing γ/β needs no variant: drop their gradients (`without_layer_norm_
parameters`) before the optimizer step.
"""
from __future__ import annotations

from .. import functional as F

LN_SUFFIXES = ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "ln_f.weight",
               "ln_f.bias")


def without_layer_norm_parameters(grads: dict) -> dict:
    """grads minus every LayerNorm γ and β: an optimizer step then leaves them as they are."""
    return {k: v for k, v in grads.items() if not k.endswith(LN_SUFFIXES)}


def loss_and_grads(model, idx, targets, *, layer_norm: bool = True) -> tuple[float, dict]:
    """(mean cross-entropy, gradients keyed like model.parameters()) of `model` (a nanonorm
    GPT) on idx, targets (B, T) int; without LayerNorm the γ, β keys are absent."""
    loss, tape = forward(model, idx, targets, layer_norm=layer_norm)
    return loss, backward(model, tape)


def forward(model, idx, targets, *, layer_norm: bool = True) -> tuple[float, tuple]:
    """(mean cross-entropy, the caches `backward` reads)."""
    p, cfg, xp = model.parameters(), model.config, model.xp
    B, T = idx.shape
    C, NH = cfg.n_embd, cfg.n_head

    def norm(x, name):
        if not layer_norm:
            return x, None
        return F.layer_norm_forward(x, (C,), p[name + ".weight"], p[name + ".bias"], cfg.ln_eps)

    tok, wte_c = F.embedding_forward(idx, p["transformer.wte.weight"])         # (B, T, C)
    pe, wpe_c = F.embedding_forward(xp.arange(T), p["transformer.wpe.weight"])  # (T, C)
    x, blocks = tok + pe, []
    for i in range(cfg.n_layer):
        pre = f"transformer.h.{i}."
        h, ln1 = norm(x, pre + "ln_1")
        qkv, c_attn = F.linear_forward(h, p[pre + "attn.c_attn.weight"],
                                       p[pre + "attn.c_attn.bias"])     # (B, T, 3C)
        qkv = xp.permute_dims(xp.reshape(qkv, (B, T, 3, NH, C // NH)), (2, 0, 3, 1, 4))
        y, attn = F.scaled_dot_product_attention_forward(qkv[0, ...], qkv[1, ...], qkv[2, ...],
                                                         causal=True)   # (B, NH, T, hs)
        y = xp.reshape(xp.permute_dims(y, (0, 2, 1, 3)), (B, T, C))
        a, c_proj = F.linear_forward(y, p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"])
        x = x + a
        h, ln2 = norm(x, pre + "ln_2")
        f, c_fc = F.linear_forward(h, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"])
        f, gelu = F.gelu_forward(f)                                     # (B, T, 4C)
        m, mlp_proj = F.linear_forward(f, p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])
        x = x + m
        blocks.append((ln1, c_attn, attn, c_proj, ln2, c_fc, gelu, mlp_proj))
    h, lnf = norm(x, "transformer.ln_f")
    head_w = p["transformer.wte.weight" if cfg.tie_weights else "lm_head.weight"]
    logits, head = F.linear_forward(h, xp.matrix_transpose(head_w))     # (B, T, V)
    loss, loss_c = F.cross_entropy_forward(logits, targets)
    return float(loss), ((B, T), wte_c, wpe_c, blocks, lnf, head, loss_c)


def backward(model, tape: tuple) -> dict:
    """Gradients of forward's loss, keyed like model.parameters() (no γ, β without LN)."""
    p, cfg, xp = model.parameters(), model.config, model.xp
    shape, wte_c, wpe_c, blocks, lnf, head, loss_c = tape
    (B, T), C, NH = shape, cfg.n_embd, cfg.n_head
    g = {}

    def norm_back(d, cache, name):
        if cache is None:
            return d                                                    # identity
        d, g[name + ".weight"], g[name + ".bias"] = F.layer_norm_backward(d, cache)
        return d

    dx, dhead, _ = F.linear_backward(F.cross_entropy_backward(1.0, loss_c), head)
    dx = norm_back(dx, lnf, "transformer.ln_f")
    for i in reversed(range(cfg.n_layer)):
        pre = f"transformer.h.{i}."
        ln1, c_attn, attn, c_proj, ln2, c_fc, gelu, mlp_proj = blocks[i]
        df, g[pre + "mlp.c_proj.weight"], g[pre + "mlp.c_proj.bias"] = \
            F.linear_backward(dx, mlp_proj)
        dh, g[pre + "mlp.c_fc.weight"], g[pre + "mlp.c_fc.bias"] = \
            F.linear_backward(F.gelu_backward(df, gelu), c_fc)
        dx = dx + norm_back(dh, ln2, pre + "ln_2")
        dy, g[pre + "attn.c_proj.weight"], g[pre + "attn.c_proj.bias"] = \
            F.linear_backward(dx, c_proj)
        dy = xp.permute_dims(xp.reshape(dy, (B, T, NH, C // NH)), (0, 2, 1, 3))
        dqkv = xp.stack(F.scaled_dot_product_attention_backward(dy, attn))  # (3, B, NH, T, hs)
        dqkv = xp.reshape(xp.permute_dims(dqkv, (1, 3, 0, 2, 4)), (B, T, 3 * C))
        dh, g[pre + "attn.c_attn.weight"], g[pre + "attn.c_attn.bias"] = \
            F.linear_backward(dqkv, c_attn)
        dx = dx + norm_back(dh, ln1, pre + "ln_1")
    g["transformer.wpe.weight"] = F.embedding_backward(xp.sum(dx, axis=0), wpe_c)
    dwte = F.embedding_backward(dx, wte_c)                              # (V, C)
    if cfg.tie_weights:
        g["transformer.wte.weight"] = dwte + xp.matrix_transpose(dhead)  # one matrix, two uses
    else:
        g["transformer.wte.weight"], g["lm_head.weight"] = dwte, xp.matrix_transpose(dhead)
    return {name: g[name] for name in p if name in g}
