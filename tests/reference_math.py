"""Independent float64 formulas, written differently from nanonorm/ops on purpose.

Explicit loops, exact rational statistics and textbook identities; nothing here imports
nanonorm, so a bug shared by the reference and a kernel cannot hide behind this file.
Inputs are NumPy arrays (any float dtype); outputs are float64 NumPy arrays.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def layer_norm(x, k, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last k dims, with the mean and variance computed exactly."""
    x = np.asarray(x, dtype=np.float64)
    d = math.prod(x.shape[x.ndim - k:])
    rows = x.reshape(-1, d)
    out = np.empty_like(rows)
    for r, row in enumerate(rows):
        exact = [Fraction(float(v)) for v in row]
        mean = sum(exact) / d
        var = sum((v - mean) ** 2 for v in exact) / d
        rstd = 1.0 / math.sqrt(float(var) + eps)
        out[r] = [float(v - mean) * rstd for v in exact]
    out = out.reshape(x.shape)
    if weight is not None:
        out = out * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    return out


def _exp(a):
    return math.inf if a > 709.0 else math.exp(a)


def _softmax_row(z):
    """p_i = 1 / Σ_j exp(z_j - z_i): no max subtraction needed, -inf entries give 0."""
    out = np.zeros(len(z))
    for i, zi in enumerate(z):
        if zi == -math.inf:
            continue
        out[i] = 1.0 / math.fsum(_exp(zj - zi) if zj != -math.inf else 0.0 for zj in z)
    return out


def softmax(x, axis=-1, temperature=1.0):
    z = np.moveaxis(np.asarray(x, dtype=np.float64) / temperature, axis, -1)
    out = np.array([_softmax_row(row) for row in z.reshape(-1, z.shape[-1])])
    return np.moveaxis(out.reshape(z.shape), -1, axis)


def log_softmax(x, axis=-1, temperature=1.0):
    z = np.moveaxis(np.asarray(x, dtype=np.float64) / temperature, axis, -1)
    rows = z.reshape(-1, z.shape[-1])
    out = np.full_like(rows, -math.inf)
    for r, row in enumerate(rows):
        live = [zj for zj in row if zj != -math.inf]
        if not live:
            continue
        m = max(live)  # z_i - log Σ exp(z_j) = (z_i - m) - log Σ exp(z_j - m), summed exactly
        log_sum = math.log(math.fsum(math.exp(zj - m) for zj in live))
        out[r] = [(zi - m) - log_sum if zi != -math.inf else -math.inf for zi in row]
    return np.moveaxis(out.reshape(z.shape), -1, axis)


def attention(q, k, v, causal=False, scale=None):
    """One query at a time: scores, optional causal mask (bottom-right aligned), weighted sum."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    t, s, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    lead = q.shape[:-2]
    qf, kf, vf = (a.reshape(-1, *a.shape[-2:]) for a in (q, k, v))
    out = np.zeros((qf.shape[0], t, v.shape[-1]))
    for b in range(qf.shape[0]):
        for i in range(t):
            scores = [math.fsum(qf[b, i] * kf[b, j]) * scale
                      if not causal or j <= i + s - t else -math.inf for j in range(s)]
            p = _softmax_row(np.array(scores))
            out[b, i] = sum(p[j] * vf[b, j] for j in range(s)) if s else 0.0
    return out.reshape(*lead, t, v.shape[-1])


def gelu(x):
    x = np.asarray(x, dtype=np.float64)
    return np.vectorize(lambda a: 0.5 * a * (1.0 + math.tanh(SQRT_2_OVER_PI
                                                             * (a + 0.044715 * a ** 3))))(x)


def gelu_grad(x):
    """d gelu / dx with sech² written as 1 / cosh²."""
    def one(a):
        u = SQRT_2_OVER_PI * (a + 0.044715 * a ** 3)
        sech2 = 0.0 if abs(u) > 350 else 1.0 / math.cosh(u) ** 2
        return 0.5 * (1.0 + math.tanh(u)) + 0.5 * a * sech2 * SQRT_2_OVER_PI * (
            1.0 + 3 * 0.044715 * a * a)
    return np.vectorize(one)(np.asarray(x, dtype=np.float64))


def linear(x, w, b=None):
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.array([[math.fsum(row * w[:, j]) for j in range(w.shape[1])] for row in rows])
    out = out.reshape(*x.shape[:-1], w.shape[1])
    return out if b is None else out + np.asarray(b, dtype=np.float64)


def embedding_grad(idx, dy, num_embeddings):
    """Σ over positions of dy into the row of each position's id, one position at a time."""
    dy = np.asarray(dy, dtype=np.float64)
    dw = np.zeros((num_embeddings, dy.shape[-1]))
    for i, row in zip(np.asarray(idx).reshape(-1), dy.reshape(-1, dy.shape[-1])):
        dw[i] += row
    return dw


def cross_entropy(logits, targets):
    z = np.asarray(logits, dtype=np.float64)
    rows, t = z.reshape(-1, z.shape[-1]), np.asarray(targets).reshape(-1)
    losses = [-log_softmax(row)[ti] for row, ti in zip(rows, t)]
    return math.fsum(losses) / len(losses)


def cross_entropy_grad(logits, targets):
    """(softmax - onehot) / N."""
    z = np.asarray(logits, dtype=np.float64)
    rows, t = z.reshape(-1, z.shape[-1]), np.asarray(targets).reshape(-1)
    g = np.array([_softmax_row(row) for row in rows])
    g[np.arange(len(t)), t] -= 1.0
    return (g / len(t)).reshape(z.shape)


def log_softmax_any(x, temperature=1.0):
    """log_softmax(x / T) along the last axis for any finite T > 0 and any logits, -inf ones
    included: each (x_i - max) / T is formed exactly as a fraction (no overflow, however large
    the logits or tiny the temperature), then rounded to float64 (-inf beyond its range).
    A row that is all -inf gives -inf; one holding NaN or +inf gives NaN."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.full_like(rows, -math.inf)
    for r, row in enumerate(rows):
        if any(math.isnan(v) or v == math.inf for v in row):
            out[r] = math.nan
            continue
        live = [v for v in row if v != -math.inf]
        if not live:
            continue
        m = Fraction(max(live))
        z = []
        for v in row:
            try:
                z.append(-math.inf if v == -math.inf
                         else float((Fraction(v) - m) / Fraction(temperature)))
            except OverflowError:                 # beyond float64: -inf (z <= 0 always)
                z.append(-math.inf)
        log_sum = math.log(math.fsum(math.exp(zj) for zj in z))   # max z is 0: sum >= 1
        out[r] = [zj - log_sum for zj in z]
    return out.reshape(x.shape)


def softmax_any(x, temperature=1.0):
    """softmax(x / T) along the last axis, as exp(log_softmax_any) (0 where it is -inf)."""
    return np.exp(log_softmax_any(x, temperature))


def layer_norm_grad(x, dy, weight=None, eps=1e-5):
    """dx of LayerNorm over the last dim, textbook form, one row at a time with the mean and
    variance computed exactly: dx = rstd · (g - mean(g) - xhat · mean(g · xhat)), g = dy·w."""
    x, dy = np.asarray(x, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, dtype=np.float64)
    xr, dyr = x.reshape(-1, x.shape[-1]), dy.reshape(-1, x.shape[-1])
    out = np.empty_like(xr)
    for r, (row, drow) in enumerate(zip(xr, dyr)):
        exact = [Fraction(float(v)) for v in row]
        mean = sum(exact) / len(exact)
        var = sum((v - mean) ** 2 for v in exact) / len(exact)
        rstd = 1.0 / math.sqrt(float(var) + eps)
        xhat = [float(v - mean) * rstd for v in exact]
        g = [float(d) * float(wj) for d, wj in zip(drow, w)]
        mg = math.fsum(g) / len(g)
        mgx = math.fsum(gj * xj for gj, xj in zip(g, xhat)) / len(g)
        out[r] = [rstd * (gj - mg - xj * mgx) for gj, xj in zip(g, xhat)]
    return out.reshape(x.shape)
