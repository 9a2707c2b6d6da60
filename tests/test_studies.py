"""Each study demonstrates one property; each test checks that property on the study's numbers."""
import math

import numpy as np
import pytest

from nanonorm.studies import attention_scaling, instability, layernorm_stats


# Study 1: repeated products --------------------------------------------------------------

def test_scaled_chain_vanishes_below_one_stays_flat_at_one_explodes_above():
    chain = instability.matrix_chain(b="scaled", steps=50)
    growth = {s: r["growth_per_step"] for s, r in chain["scales"].items()}
    assert growth["0.5"] < 0.6 and growth["1.5"] > 1.3 and growth["2.0"] > 1.8
    assert 0.9 < growth["1.0"] < 1.1
    norms = chain["scales"]["1.0"]["norms"]
    assert max(norms) / min(norms) < 10  # "roughly flat": within a decade over 50 steps


def test_curves_differ_by_s_to_the_k_because_draws_are_shared():
    chain = instability.matrix_chain(b="scaled", steps=20, dtype="float64")
    one, two = chain["scales"]["1.0"]["norms"], chain["scales"]["2.0"]["norms"]
    np.testing.assert_allclose(two, [v * 2.0**k for k, v in enumerate(one)], rtol=1e-9)


def test_raw_chain_grows_by_about_sqrt_n_and_overflows_float32():
    chain = instability.matrix_chain(b="raw", n=30, steps=50)
    g = chain["scales"]["1.0"]["growth_per_step"]
    assert 0.8 * math.sqrt(30) < g < 1.2 * math.sqrt(30)
    assert chain["scales"]["0.5"]["growth_per_step"] > 2  # even s = 0.5 explodes
    assert chain["scales"]["2.0"]["overflow_step"] is not None
    assert chain["scales"]["2.0"]["final_norm"] == math.inf


def test_float16_chain_underflows_to_zero_and_overflows():
    chain = instability.matrix_chain(b="scaled", dtype="float16", steps=50)
    assert chain["scales"]["0.5"]["underflow_step"] is not None
    assert chain["scales"]["0.5"]["final_norm"] == 0.0
    assert chain["scales"]["2.0"]["overflow_step"] is not None


def test_layernorm_after_each_product_keeps_the_norm_at_sqrt_of_entries():
    chain = instability.matrix_chain(b="raw", n=30, steps=50, layer_norm=True)
    for r in chain["scales"].values():
        # rows of mean 0, std 1: ||A||_F = sqrt(30 · 30) from step 1 on
        np.testing.assert_allclose(r["norms"][1:], 30.0, rtol=1e-4)
        assert r["overflow_step"] is None and r["underflow_step"] is None


def test_chain_rejects_unknown_b():
    with pytest.raises(ValueError, match="b must be"):
        instability.matrix_chain(b="uniform")


# Study 2: normalisation scope -------------------------------------------------------------

@pytest.fixture(scope="module")
def scope():
    return layernorm_stats.normalization_scope(shapes=((3, 10), (30, 30)), mu=2.0, sigma=3.0)


def test_last_dim_scope_normalises_each_row_and_not_the_columns(scope):
    for entry in scope["shapes"].values():
        last = entry["scopes"]["last dim"]
        rows, cols = entry["shape"]
        assert len(last["group_means"]) == rows
        np.testing.assert_allclose(last["group_means"], 0.0, atol=1e-12)
        np.testing.assert_allclose(last["group_stds"], 1.0, rtol=1e-4)
        # the other dim is left alone: column means are not all ≈ 0
        assert max(abs(m) for m in last["column_means"]) > 0.1


def test_whole_tensor_scope_normalises_globally_and_keeps_correlation_one(scope):
    for entry in scope["shapes"].values():
        whole, last = entry["scopes"]["whole tensor"], entry["scopes"]["last dim"]
        assert len(whole["group_means"]) == 1
        assert abs(whole["mean"]) < 1e-12 and abs(whole["std"] - 1) < 1e-4
        assert whole["pearson_r"] == pytest.approx(1.0, abs=1e-12)
        assert last["pearson_r"] < whole["pearson_r"] - 1e-3


def test_input_statistics_are_those_of_the_drawn_matrix(scope):
    big = scope["shapes"]["30×30"]["input"]
    assert big["mean"] == pytest.approx(2.0, abs=0.4) and big["std"] == pytest.approx(3.0, rel=0.1)


# Study 3: γ and β ----------------------------------------------------------------------------

def test_gamma_beta_set_output_std_and_mean():
    table = layernorm_stats.gamma_beta(gammas=(1, 2, 3), betas=(0, 2, 5))["table"]
    assert {(r["gamma"], r["beta"]) for r in table} == {(g, b) for g in (1, 2, 3)
                                                        for b in (0, 2, 5)}
    for r in table:
        assert r["mean"] == pytest.approx(r["beta"], abs=1e-9)
        assert r["std"] == pytest.approx(r["gamma"], rel=1e-4)
        assert sum(r["hist"]) == 900


# Study 4: std(QKᵀ) -----------------------------------------------------------------------------

def test_std_qk_50_is_about_sqrt_50():
    r = attention_scaling.qk_std(m=50, d=50)
    assert r["std_q"] == pytest.approx(1, rel=0.05) and r["std_k"] == pytest.approx(1, rel=0.05)
    assert r["std_qk"] == pytest.approx(math.sqrt(50), rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scaled_std_within_ten_percent_of_one_for_d_at_least_16(seed):
    sweep = attention_scaling.qk_std_sweep(dims=range(2, 101), trials=4, seed=seed)
    d, scaled = np.asarray(sweep["d"]), np.asarray(sweep["std_qk_scaled"])
    np.testing.assert_allclose(scaled[d >= 16], 1.0, rtol=0.10)
    np.testing.assert_allclose(sweep["std_qk"], np.asarray(sweep["sqrt_d"]) * scaled, rtol=1e-12)


# Study 5: softmax scaling ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def soft():
    return attention_scaling.softmax_scaling(m=50, d=50)


def test_dividing_by_sqrt_d_is_temperature_sqrt_d(soft):
    assert soft["max_abs_diff_scaled_vs_temperature"] < 1e-12


def test_scaling_flattens_every_row(soft):
    raw, scaled = soft["raw"], soft["scaled"]
    assert all(s < r for s, r in zip(scaled["row_max_p"], raw["row_max_p"]))
    assert all(s > r for s, r in zip(scaled["row_entropy"], raw["row_entropy"]))
    assert max(scaled["row_entropy"]) <= soft["uniform_entropy"]
    np.testing.assert_allclose(np.sum(scaled["p"], axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(-np.asarray(raw["neg_log_p"])), raw["p"], atol=1e-12)


def test_temperature_sweep_sharpens_as_t_falls(soft):
    sw = soft["temperature_sweep"]
    assert sw["temperature"] == sorted(sw["temperature"])
    assert all(np.diff(sw["mean_entropy"]) > 0) and all(np.diff(sw["mean_max_p"]) < 0)
    i = sw["temperature"].index(soft["sqrt_d"])
    assert sw["mean_max_p"][i] == pytest.approx(np.mean(soft["scaled"]["row_max_p"]), rel=1e-12)


# Study 6: LayerNorm parameters ------------------------------------------------------------

def test_fresh_model_layernorm_parameters_are_one_and_zero():
    from nanonorm.gpt_config import GPTConfig
    from nanonorm.studies import ln_params

    params, label = ln_params.load_parameters(None, preset="tiny")
    r = ln_params.layernorm_parameters(params, label=label)
    c = GPTConfig.preset("tiny")
    assert "freshly initialised" in r["label"]
    assert len(r["modules"]) == 2 * c.n_layer + 1
    assert r["gamma"]["count"] == r["beta"]["count"] == (2 * c.n_layer + 1) * c.n_embd
    assert r["gamma"]["min"] == r["gamma"]["max"] == 1.0 and r["beta"]["std"] == 0.0
    assert sum(r["gamma"]["hist"]) == r["gamma"]["count"]


def test_layernorm_parameters_read_from_a_checkpoint(tmp_path):
    from nanonorm.gpt import GPT, GPTConfig
    from nanonorm.studies import ln_params

    model = GPT(GPTConfig.preset("tiny"))
    for name, p in model.parameters().items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            p[...] = 0.3                              # the seed's "trained GPT-2" range
    model.save(tmp_path)
    params, label = ln_params.load_parameters(tmp_path)
    r = ln_params.layernorm_parameters(params, label=label)
    assert str(tmp_path) in r["label"]
    assert r["gamma"]["share_in_0.2_0.4"] == 1.0
    assert r["gamma"]["mean"] == pytest.approx(0.3, rel=1e-6)
    assert r["beta"]["share_abs_below_0.1"] == 1.0


# Study 7: parameter counts -------------------------------------------------------------------

def test_parameter_counts_are_gpt2s_exact_counts():
    from nanonorm.studies import param_counts

    r = param_counts.parameter_counts()
    totals = {k: v["total"] for k, v in r["models"].items()}
    assert totals == {"gpt2": 124_439_808, "gpt2-medium": 354_823_168,
                      "gpt2-large": 774_030_080, "gpt2-xl": 1_557_611_200,
                      "model5": 163_037_184}
    assert r["model5_vs_gpt2"] == {"untied": 163_037_184, "unembedding": 38_597_376,
                                   "tied": 124_439_808, "untied_minus_unembedding": 124_439_808}
    for m in r["models"].values():
        assert m["weights"] + m["biases"] == m["total"] == sum(m["components"].values())
        assert m["biases_share"] < 0.001                  # the seed's "< 0.1%"


def test_weight_tying_correlation_is_one_tied_and_near_zero_untied():
    from nanonorm.studies import param_counts

    r = param_counts.weight_tying(preset="tiny")
    assert r["tied"]["correlation"] == pytest.approx(1.0, abs=1e-12)
    assert abs(r["untied"]["correlation"]) < 0.1
    assert not r["tied"]["has_lm_head_weight"] and r["untied"]["has_lm_head_weight"]
    for v in (r["tied"], r["untied"]):
        assert v["allocated"] == v["analytic"]
    assert r["untied"]["allocated"] - r["tied"]["allocated"] == 256 * 16  # vocab × C


# Study 8: timing -------------------------------------------------------------------------------

def test_time_model_reports_every_phase():
    from nanonorm.studies import timing

    r = timing.time_model(preset="tiny", batch=1, seq=8, repeats=2, steps=2, impl="reference")
    assert len(r["forward_s"]) == 2 and len(r["train_step_s"]) == 2
    assert all(t > 0 for t in [r["construction_s"], r["warmup_forward_s"], *r["forward_s"],
                               *r["train_step_s"]])
    assert r["forward_total_s"] == pytest.approx(sum(r["forward_s"]))
    assert r["tokens_per_s_forward"] == pytest.approx(8 / r["forward_median_s"])


def test_providers_always_include_the_reference_and_say_why_one_is_missing():
    from nanonorm.studies import timing

    rows = timing.providers()
    assert rows[0]["impl"] == "reference" and rows[0]["available"]
    assert {r["device"] for r in rows} == {"cpu", "cuda"}
    assert all(r["note"] for r in rows if not r["available"])
