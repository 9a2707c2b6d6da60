"""Study 9: with, with frozen, and without LayerNorm — same data and weights per seed, the
oscillation measure as defined, and the no-LayerNorm model's gradients."""
import math

import numpy as np
import pytest

from nanonorm.gpt import GPT, GPTConfig
from nanonorm.studies import convergence, norm_variants

TINY = {"steps": 4, "batch": 2, "seq": 8, "eval_every": 2, "lrs": (3e-3,), "seeds": (0, 1)}
MODEL = {"preset": "tiny", "n_layer": 2, "n_embd": 16}


@pytest.fixture(scope="module")
def result():
    heard = []
    r = convergence.run(settings=TINY, model=MODEL, progress=heard.append)
    r["heard"] = heard
    return r


def _runs(result, **match):
    return [r for r in result["runs"] if all(r[k] == v for k, v in match.items())]


def test_every_variant_of_a_seed_starts_from_the_same_weights_and_sees_the_same_data(result):
    for seed in TINY["seeds"]:
        runs = _runs(result, seed=seed)
        assert {r["variant"] for r in runs} == set(convergence.VARIANTS)
        assert len({r["init_digest"] for r in runs}) == 1
        assert len({r["data_digest"] for r in runs}) == 1
    # and the seeds differ from each other
    a, b = (_runs(result, seed=s, variant="layernorm")[0] for s in TINY["seeds"])
    assert a["init_digest"] != b["init_digest"] and a["data_digest"] != b["data_digest"]


def test_with_and_without_layernorm_give_different_curves_from_one_start(result):
    ln, none = (_runs(result, seed=0, variant=v)[0] for v in ("layernorm", "none"))
    assert ln["train_loss"] != none["train_loss"] and ln["eval_loss"] != none["eval_loss"]
    assert ln["eval_steps"] == [0, 2, 4] == none["eval_steps"]


def test_frozen_gamma_beta_stay_at_one_and_zero_while_trained_ones_move(result):
    frozen, trained = (_runs(result, seed=0, variant=v)[0] for v in ("frozen", "layernorm"))
    assert frozen["max_ln_change"] == 0.0 and trained["max_ln_change"] > 0.0
    # frozen differs from trained only through γ/β: same first loss, different later
    assert frozen["train_loss"][0] == trained["train_loss"][0]
    assert frozen["train_loss"] != trained["train_loss"]


def test_the_oscillation_stored_is_the_defined_measure_of_the_held_out_curve(result):
    for r in result["runs"]:
        tail = r["eval_loss"][len(r["eval_loss"]) // 2:]
        rises = [max(0.0, b - a) for a, b in zip(tail, tail[1:])]
        assert r["oscillation"] == pytest.approx(sum(rises) / len(rises), abs=1e-15)
        assert r["mean_eval_loss"] == pytest.approx(np.mean(r["eval_loss"]))


def test_oscillation_is_the_mean_rise_over_the_second_half():
    assert convergence.oscillation([5.0, 4.0, 4.5, 3.0, 3.2, 2.0]) == pytest.approx(0.1)
    assert convergence.oscillation([5.0, 4.0, 3.0, 2.0]) == 0.0          # never goes up
    assert convergence.oscillation([1.0, 9.0, 1.0, 2.0, 1.0]) == pytest.approx(1 / 2)


def test_plot_draws_one_panel_per_learning_rate_and_the_summary(result):
    fig = convergence.plot(result)
    axes = [ax for sub in fig.subfigs for ax in sub.axes]
    assert len(axes) == len(TINY["lrs"]) + 2
    assert len(axes[0].lines) == len(TINY["seeds"]) * len(convergence.VARIANTS)


def test_progress_names_every_run_and_step(result):
    n = len(TINY["lrs"]) * len(TINY["seeds"]) * len(convergence.VARIANTS)
    assert result["heard"][0].startswith(f"run 1/{n}: LayerNorm, lr 0.003, seed 0, step 1/4")
    assert result["heard"][-1].startswith(f"run {n}/{n}: no LayerNorm")
    assert len(result["heard"]) == n * TINY["steps"]


def _fake(variant, seed, mean, osc, diverged=False):
    return {"variant": variant, "lr": 0.1, "seed": seed, "mean_eval_loss": mean,
            "final_eval_loss": mean, "oscillation": osc, "diverged": diverged}


def test_the_claim_is_checked_seed_by_seed():
    def summary(none_mean, none_osc, none_diverged=False):
        runs = [_fake(v, s, 3.0, 0.1) for s in (0, 1) for v in ("layernorm", "frozen")]
        runs += [_fake("none", s, none_mean[s], none_osc[s], none_diverged) for s in (0, 1)]
        return convergence.summarize(runs, [0.1], [0, 1])[0]
    assert summary((4.0, 4.0), (0.2, 0.2))["held"] == "yes"
    assert summary((2.0, 2.0), (0.0, 0.0))["held"] == "no"
    row = summary((4.0, 2.0), (0.2, 0.1))
    assert (row["held"], row["faster_seeds"], row["calmer_seeds"]) == ("partly", 1, 1)
    assert row["equal_oscillation_seeds"] == 1
    # a diverged curve that falls back from 1e10 has no rise, yet it is the unstable one
    assert summary((1e10, 1e10), (0.0, 0.0), none_diverged=True)["held"] == "yes"


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        convergence.train_variant("batchnorm", lr=1e-3, seed=0, steps=1, batch=1, seq=8,
                                  eval_every=1)


# the model without LayerNorm ---------------------------------------------------------------

def _batch(config, B=2, T=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T)))


@pytest.mark.parametrize("tie", [True, False])
def test_with_layernorm_the_variant_is_gpts_own_forward_and_backward(tie):
    model = GPT(GPTConfig.preset("tiny", tie_weights=tie), seed=2, dtype="float64")
    idx, targets = _batch(model.config)
    _, loss = model.forward(idx, targets)
    grads = model.backward()
    loss2, grads2 = norm_variants.loss_and_grads(model, idx, targets, layer_norm=True)
    assert loss2 == float(loss)
    assert grads2.keys() == grads.keys()
    for name in grads:
        np.testing.assert_allclose(grads2[name], grads[name], rtol=1e-12, atol=1e-15,
                                   err_msg=name)


def test_without_layernorm_the_loss_changes_and_gamma_beta_get_no_gradient():
    model = GPT(GPTConfig.preset("tiny"), seed=2, dtype="float64")
    idx, targets = _batch(model.config)
    with_ln, _ = norm_variants.loss_and_grads(model, idx, targets)
    without, grads = norm_variants.loss_and_grads(model, idx, targets, layer_norm=False)
    assert without != with_ln
    assert not any(k.endswith(norm_variants.LN_SUFFIXES) for k in grads)
    assert set(grads) == set(norm_variants.without_layer_norm_parameters(model.parameters()))


@pytest.mark.parametrize("tie", [True, False])
def test_without_layernorm_gradients_match_finite_differences(tie):
    model = GPT(GPTConfig.preset("tiny", tie_weights=tie), seed=4, dtype="float64")
    params = model.parameters()
    for p in params.values():                     # break the symmetry of zero biases
        p += np.random.default_rng(1).normal(0, 0.05, p.shape)
    idx, targets = _batch(model.config)
    _, grads = norm_variants.loss_and_grads(model, idx, targets, layer_norm=False)
    rng = np.random.default_rng(0)
    h = 1e-6
    for name, g in grads.items():
        direction = rng.normal(size=g.shape)
        p = params[name]
        p += h * direction
        up = norm_variants.forward(model, idx, targets, layer_norm=False)[0]
        p -= 2 * h * direction
        down = norm_variants.forward(model, idx, targets, layer_norm=False)[0]
        p += h * direction
        numeric = (up - down) / (2 * h)
        assert float(np.sum(g * direction)) == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_is_marked():
    r = convergence.train_variant("none", lr=1e4, seed=0, steps=30, batch=2, seq=8,
                                  eval_every=5, model=MODEL)
    assert r["diverged"]
    assert r["steps_run"] <= 30
    finite = [math.isfinite(v) for v in r["train_loss"]]
    assert all(finite[:-1])                       # stops at the first non-finite one, if any
