"""The whole model through the CUDA kernels, end to end, on numba-cuda's simulator (CI-sized).

tests/test_cupy_end_to_end.py runs GPT-sized bodies on a GPU (or, with
NANONORM_E2E_LIB=simulator, for many minutes here). This module keeps a tiny model small
enough for every CI run: NumPy arrays routed to the CUDA kernels (flash attention, LayerNorm,
bias+GELU, fused cross-entropy, AdamW) for a forward, a backward and AdamW steps, against the
reference under the error budget. It says nothing about a real GPU.
"""
import numpy as np
import pytest

import nanonorm
from nanonorm import dispatch
from nanonorm.testing import assert_close_budget

numba_cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
if not numba_cuda.config.ENABLE_CUDASIM:
    pytest.skip("a GPU is present: tests/test_cupy_end_to_end.py runs the model there",
                allow_module_level=True)

TINY = nanonorm.GPTConfig(n_layer=1, n_head=2, n_embd=8, vocab_size=37, block_size=8)


@pytest.fixture
def on_cuda_kernels():
    """NumPy arrays dispatch to the CUDA kernels (on the simulator)."""
    with dispatch.cuda_kernels_on_numpy():
        yield


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, TINY.vocab_size, (2, 7)),
            rng.integers(0, TINY.vocab_size, (2, 7)))


def train(steps, dtype="float32"):
    model = nanonorm.GPT(TINY, seed=1, dtype=dtype)
    opt = model.configure_optimizer(lr=1e-2)
    idx, targets = batch()
    losses, grads = [], None
    for _ in range(steps):
        _, loss = model.forward(idx, targets, return_logits=False)      # the training path
        grads = model.backward()
        opt.step(grads)
        losses.append(float(loss))
    return np.array(losses), grads, model.parameters()


def test_training_steps_through_the_cuda_kernels(on_cuda_kernels):
    x = np.zeros((2, 8), np.float32)
    for op in ("layer_norm_forward", "bias_gelu_backward", "cross_entropy_forward",
               "scaled_dot_product_attention_backward", "adamw_step"):
        assert dispatch.implementation_for(op, x) == "cuda", op
    losses, grads, params = train(3)
    with nanonorm.use_impl("reference"):
        ref_losses, ref_grads, ref_params = train(3)
        exact_losses, exact_grads, exact_params = train(3, "float64")
    assert losses[-1] < losses[0]
    assert_close_budget(losses, ref_losses, exact_losses, name="losses")
    for name in params:
        assert_close_budget(grads[name], ref_grads[name], exact_grads[name],
                            name=f"last gradient {name}")
        assert_close_budget(params[name], ref_params[name], exact_params[name],
                            name=f"{name} after 3 steps")
