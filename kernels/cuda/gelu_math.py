"""GELU (tanh approximation) of one element, as numba-cuda device functions: the math that the
GELU and bias+GELU kernels share, edges included (±inf take GELU's limits, NaN stays NaN).

c0 = sqrt(2/π), c1 = 0.044715, cs (|x| past which tanh is ±1), half and one come typed in
the data's dtype from the kernel (a Python number would promote float32 work to float64), so
float32 stays single precision (tanhf).
"""
from __future__ import annotations

import math

from numba import cuda


@cuda.jit(device=True)
def gelu_value(xi, c0, c1, cs, half, one):
    # keeps xc³ finite (tanh is ±1 there anyway); a GPU's fmax may turn NaN into ±cs, so NaN
    # is carried by xi itself, never by xc
    xc = min(max(xi, -cs), cs)
    f = half * (one + math.tanh(c0 * xc * (one + c1 * xc * xc)))
    return xi * f if f != 0 or xi != xi else one - one    # gelu(-inf) = 0, NaN stays NaN


@cuda.jit(device=True)
def gelu_slope(xi, c0, c1, cs, half, one):
    xc = min(max(xi, -cs), cs)
    th = math.tanh(c0 * xc * (one + c1 * xc * xc))
    du = c0 * (one + (one + one + one) * c1 * xc * xc)  # d(tanh argument)/dx
    f = half * (one - th * th) * du
    return half * (one + th) + (xi * f if f != 0 or xi != xi else one - one)
