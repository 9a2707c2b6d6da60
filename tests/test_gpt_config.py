"""GPTConfig: presets, the exact GPT-2 parameter counts, the breakdown, validation."""
import math

import pytest

from nanonorm.gpt import GPT, GPTConfig
from nanonorm.gpt_config import PRESETS, parameter_shapes

# the published sizes of GPT-2 and of the untied "Model 5"
EXACT = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
         "gpt2-xl": 1_557_611_200, "model5": 163_037_184}


@pytest.mark.parametrize("name", list(EXACT))
def test_preset_counts_are_exact(name):
    assert GPTConfig.preset(name).num_parameters() == EXACT[name]


@pytest.mark.parametrize("name", list(PRESETS))
def test_analytic_count_equals_shape_table(name):
    # the closed formula and the allocation table are written independently
    cfg = GPTConfig.preset(name)
    assert cfg.num_parameters() == sum(math.prod(s) for s in parameter_shapes(cfg).values())


@pytest.mark.parametrize("tie", [True, False])
def test_analytic_count_equals_allocated_model(tie):
    cfg = GPTConfig(n_layer=3, n_head=2, n_embd=8, vocab_size=37, block_size=11, tie_weights=tie)
    model = GPT(cfg)
    assert model.num_parameters() == cfg.num_parameters()
    assert ("lm_head.weight" in model.parameters()) == (not tie)
    split = cfg.parameter_breakdown()["total"]
    biases = sum(p.size for n, p in model.parameters().items() if n.endswith(".bias"))
    assert split["biases"] == biases
    assert split["weights"] == model.num_parameters() - biases


def test_gpt2_small_breakdown():
    b = GPTConfig.preset("gpt2").parameter_breakdown()
    assert b["total"]["biases"] == 102_144
    assert round(100 * b["total"]["biases"] / b["total"]["total"], 3) == 0.082
    assert b["embeddings"]["total"] == 50257 * 768 + 1024 * 768
    assert b["unembedding"]["total"] == 0
    assert b["layernorm"] == {"weights": 25 * 768, "biases": 25 * 768, "total": 50 * 768}
    assert sum(r["total"] for k, r in b.items() if k != "total") == b["total"]["total"]
    untied = GPTConfig.preset("model5").parameter_breakdown()
    assert untied["unembedding"]["weights"] == 50257 * 768


def test_bad_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="gpt2-medium.*model5"):
        GPTConfig.preset("gpt3")


def test_preset_overrides():
    assert GPTConfig.preset("mini", block_size=64).block_size == 64


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_layer=0, n_head=1, n_embd=4), "n_layer"),
    (dict(n_layer=1, n_head=3, n_embd=4), "divisible"),
    (dict(n_layer=1, n_head=1, n_embd=4, ln_eps=0.0), "ln_eps"),
    (dict(n_layer=1, n_head=1, n_embd=4, vocab_size=2.5), "vocab_size"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_layer=10**6, n_head=1, n_embd=4), "n_layer must be at most 1,024"),
    (dict(n_layer=10**400, n_head=1, n_embd=4), "n_layer must be at most"),
    (dict(n_layer=10**5000, n_head=1, n_embd=4), "n_layer must be at most.*integer of"),
    (dict(n_layer=1, n_head=1, n_embd=4, vocab_size=10**12), "vocab_size must be at most"),
    (dict(n_layer=1, n_head=1, n_embd=4, block_size=10**9), "block_size must be at most"),
    (dict(n_layer=1, n_head=1, n_embd=4, ln_eps=math.inf), "ln_eps must be a finite"),
    (dict(n_layer=1, n_head=1, n_embd=4, ln_eps=math.nan), "ln_eps must be a finite"),
    (dict(n_layer=1, n_head=1, n_embd=4, ln_eps=True), "ln_eps"),
    (dict(n_layer="x" * 10**6, n_head=1, n_embd=4), "n_layer must be a positive int"),
    # every field within its limit, the whole far beyond any machine
    (dict(n_layer=1024, n_head=1024, n_embd=65536), "parameters, more than"),
])
def test_absurd_configs_are_refused_at_once_and_briefly(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        GPTConfig(**kwargs)
    assert len(str(info.value)) < 200


def test_the_largest_presets_are_within_the_limits():
    assert GPTConfig.preset("gpt2-xl", block_size=1 << 20).num_parameters() > 1e9
