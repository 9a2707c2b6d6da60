"""AdamW's declaration: an in-place update (no backward), checked by `nanonorm.optim.AdamW`
before it dispatches; drawn inputs and the bench row."""
from __future__ import annotations

import numpy as np

from ..opspec import BenchCase, OpSpec, Sample
from ..ops import adamw

HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)


def inputs(rng, size: dict) -> Sample:
    """size: P, the number of parameters; one step's param, grad, m, v (m, v from zero)."""
    p, g = rng.standard_normal(size["P"]), rng.standard_normal(size["P"])
    return Sample((p, g, np.zeros_like(p), np.zeros_like(p)), dict(HYPER, step=1), None)


def test_size(rng) -> dict:
    return dict(P=int(rng.integers(1, 2000)))


def torch_adamw(torch, p, g, m, v, *, lr, beta1, beta2, eps, weight_decay, step):
    """torch.optim.AdamW on p (with its own m, v from zero, as m, v here): a callable doing
    one step and returning p, as the bench times an update's peer."""
    param = torch.nn.Parameter(p.detach().clone())
    param.grad = g
    opt = torch.optim.AdamW([param], lr=lr, betas=(beta1, beta2), eps=eps,
                            weight_decay=weight_decay)

    def one_step():
        opt.step()
        return param.detach()
    return one_step


SPECS = [OpSpec(
    name="adamw_step", reference=adamw, cache=(), check_forward=None, check_backward=None,
    inputs=inputs, test_size=test_size, update=True,
    # AdamW: read p, g, m, v, write p, m, v -> 7·P·4 bytes; GPT-2 small's parameters
    bench=(BenchCase("adamw_step", dict(P=124_439_808), dict(P=100_003), "GB/s",
                     lambda s: 7 * s["P"] * 4),),
    torch=torch_adamw,
)]
