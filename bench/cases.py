"""The bench grid's cases: one per BenchCase row of the op declarations, and the whole model.

A case draws its inputs once (the same for every provider), builds one zero-argument call per
provider (`build`: one runner for CPU and GPU, nanonorm and torch alike) and knows what the
call should return (`expected`): the reference's result in float32 and in float64, which the
error budget of the tests compares a provider's result with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import nanonorm
from nanonorm import opspec
from nanonorm.dispatch import kernels, resolve

from .providers import Provider, torch_module


@dataclass(frozen=True)
class Expected:
    approx: np.ndarray          # the reference in float32: its own error sets the budget
    exact: np.ndarray           # the reference in float64
    scale: float | None = None  # the magnitude the result rounds at, where above its own


@dataclass(frozen=True)
class Case:
    name: str
    full: dict                                  # GPT-2 small sizes
    quick: dict                                 # a tiny size for the smoke test
    unit: str                                   # "GB/s" or "GFLOP/s"
    work: Callable[[dict], float]               # bytes or FLOPs per call
    inputs: Callable[[dict], Any]               # size -> inputs (host, drawn once)
    build: Callable[[Provider, Any], Callable]  # (provider, inputs) -> call
    expected: Callable[[Any], Expected | None]  # inputs -> what a nanonorm call returns
    heavy: bool = False                         # model and AdamW rows: few, slow calls
    torch_comparable: bool = True               # torch's result is checked like ours


# ops ----------------------------------------------------------------------------------------

def _first(result):
    """The output of (out, cache), or the first gradient of a backward."""
    return result[0] if isinstance(result, tuple) else result


def _op_case(spec: opspec.OpSpec, row: opspec.BenchCase) -> Case:
    def inputs(size):
        return spec.inputs(np.random.default_rng(0), size)

    def nanonorm_call(provider, sample):
        args = [provider.array(a) for a in sample.args]
        dy = provider.array(sample.dy)
        if spec.update:                          # each call takes the next step
            step = [0]

            def call():
                step[0] += 1
                resolve(spec.forward_name, args[0])(*args, **dict(sample.kwargs, step=step[0]))
                return args[0]
            return call
        forward = getattr(nanonorm.functional, spec.forward_name)
        backward = getattr(nanonorm.functional, spec.backward_name)

        def call():
            out, cache = forward(*args, **sample.kwargs)
            return _first(backward(dy, cache)) if row.backward else out
        return call

    def torch_call(provider, sample):
        torch = torch_module()
        if spec.update:
            return spec.torch(torch, *(provider.array(a) for a in sample.args), **sample.kwargs)
        dy = provider.array(sample.dy)
        # the inputs are made once, as nanonorm's are: a conversion from the host's float64
        # inside the timed call would charge torch a pass over its inputs that ours never pays
        args = [provider.array(a, grad=row.backward) for a in sample.args]
        leaves = [a for a in args if getattr(a, "requires_grad", False)]

        def call():
            out = spec.torch(torch, *args, **sample.kwargs)
            if not row.backward:
                return out
            for a in leaves:
                a.grad = None                        # fresh gradients, not accumulated ones
            out.backward(dy)
            return leaves[0].grad
        return call

    def build(provider, sample):
        return (torch_call if provider.is_torch else nanonorm_call)(provider, sample)

    def expected(sample):
        ref = kernels("reference")

        def run(dtype):
            args = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                    else a for a in sample.args]
            if spec.update:
                args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
                ref[spec.forward_name](*args, **sample.kwargs)
                return args[0]
            out, cache = ref[spec.forward_name](*args, **sample.kwargs)
            if not row.backward:
                return out
            return _first(ref[spec.backward_name](sample.dy.astype(dtype), cache))
        scale = sample.grad_scale if row.backward else sample.out_scale
        return Expected(run(np.float32), run(np.float64), scale)

    return Case(row.name, row.full, row.quick, row.unit, row.work, inputs, build, expected,
                heavy=spec.update)


# the whole model ----------------------------------------------------------------------------

VOCAB = 50257
GPT2 = dict(B=4, T=256, L=12, H=12, C=768)
TINY = dict(B=1, T=16, L=2, H=2, C=64)


def _config(size):
    return nanonorm.GPTConfig(n_layer=size["L"], n_head=size["H"], n_embd=size["C"],
                              vocab_size=VOCAB, block_size=1024)


def _model_case(name: str, train: bool) -> Case:
    def inputs(size):
        rng = np.random.default_rng(0)
        return size, rng.integers(0, VOCAB, (size["B"], size["T"])), \
            rng.integers(0, VOCAB, (size["B"], size["T"]))

    def nanonorm_call(provider, data):
        size, idx, tgt = data
        model = nanonorm.GPT(_config(size), seed=0, device=provider.device)
        idx, tgt = model.xp.asarray(idx), model.xp.asarray(tgt)
        opt = model.configure_optimizer(lr=1e-5)

        def call():
            if not train:
                return model.forward(idx)[0][0, -1]
            _, loss = model.forward(idx, tgt, return_logits=False)
            opt.step(model.backward())
            return loss
        return call

    def torch_call(provider, data):
        size, idx, tgt = data
        torch = torch_module()
        import transformers
        tc = transformers.GPT2Config(n_layer=size["L"], n_head=size["H"], n_embd=size["C"],
                                     vocab_size=VOCAB, n_positions=1024, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0,
                                     activation_function="gelu_new")
        model = transformers.GPT2LMHeadModel(tc).to(provider.device)
        idx, tgt = (torch.as_tensor(a, device=provider.device) for a in (idx, tgt))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                weight_decay=0.1)

        def call():
            if not train:
                model.eval()
                with torch.no_grad():
                    return model(idx).logits[0, -1]
            model.train()
            logits = model(idx).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return call

    def build(provider, data):
        return (torch_call if provider.is_torch else nanonorm_call)(provider, data)

    def expected(data):
        size, idx, tgt = data

        def run(dtype):                  # the first call's result: logits, or the loss
            with nanonorm.use_impl("reference"):
                model = nanonorm.GPT(_config(size), seed=0, dtype=dtype)
                return model.forward(idx)[0][0, -1] if not train else \
                    np.asarray(model.forward(idx, tgt)[1])
        return Expected(run("float32"), run("float64"))

    def work(size):
        # forward: 2 FLOPs per parameter per token (+ attention, left out); a training step is
        # forward + backward (2x) -> 6 per parameter per token, + AdamW
        return (6 if train else 2) * _config(size).num_parameters() * size["B"] * size["T"]

    return Case(name, GPT2, TINY, "GFLOP/s", work, inputs, build, expected, heavy=True,
                torch_comparable=False)     # transformers initialises its own weights


def all_cases() -> list[Case]:
    """Every declared op's rows, then the model's."""
    cases = [_op_case(spec, row) for spec in opspec.specs() for row in spec.bench]
    return cases + [_model_case("gpt2_forward", False), _model_case("gpt2_train_step", True)]
