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
    return layernorm_stats.normalization_scope(
        shapes=((3, 10), (30, 30)), laws={"N(0, 1)": (0.0, 1.0), "N(2, 3²)": (2.0, 3.0)})


def _entries(scope):
    return [e for law in scope["laws"].values() for e in law["shapes"].values()]


def test_last_dim_reading_normalises_each_row_and_not_the_columns(scope):
    for e in _entries(scope):
        last = e["scopes"]["last dim"]
        rows, cols = e["shape"]
        assert len(last["row_means"]) == rows and len(last["column_means"]) == cols
        np.testing.assert_allclose(last["row_means"], 0.0, atol=1e-12)
        np.testing.assert_allclose(last["row_stds"], 1.0, rtol=1e-3)
        # the other dim is left alone: column means are not all ≈ 0
        assert max(abs(m) for m in last["column_means"]) > 0.1


def test_first_dim_reading_normalises_each_column_and_not_the_rows(scope):
    for e in _entries(scope):
        first = e["scopes"]["first dim"]
        np.testing.assert_allclose(first["column_means"], 0.0, atol=1e-12)
        np.testing.assert_allclose(first["column_stds"], 1.0, rtol=1e-3)
        assert max(abs(m) for m in first["row_means"]) > 0.05
        # each column normalised over its rows, by the textbook formula
        x = np.asarray(e["x"])
        want = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
        np.testing.assert_allclose(first["y"], want, rtol=1e-9, atol=1e-12)


def test_whole_tensor_reading_normalises_globally_and_keeps_correlation_one(scope):
    for e in _entries(scope):
        whole = e["scopes"]["whole tensor"]
        assert abs(whole["mean"]) < 1e-12 and abs(whole["std"] - 1) < 1e-3
        assert whole["pearson_r"] == pytest.approx(1.0, abs=1e-12)
        for reading in ("last dim", "first dim"):
            assert e["scopes"][reading]["pearson_r"] < whole["pearson_r"] - 1e-3


def test_both_input_laws_are_drawn_as_stated(scope):
    big = scope["laws"]["N(2, 3²)"]["shapes"]["30×30"]["input"]
    assert big["mean"] == pytest.approx(2.0, abs=0.4) and big["std"] == pytest.approx(3.0, rel=0.1)
    unit = scope["laws"]["N(0, 1)"]["shapes"]["30×30"]["input"]
    assert unit["mean"] == pytest.approx(0.0, abs=0.15) and unit["std"] == pytest.approx(1, rel=0.1)


def test_the_notes_before_ln_mean_is_measured_in_standard_errors_of_its_stated_input(scope):
    # the note's table mean 2.31 against N(0, 1): the mean of n entries has std 1/sqrt(n)
    check = scope["note_input_check"]
    assert check["3×10"] == pytest.approx(2.31 / (1 / math.sqrt(30)))
    assert check["30×30"] == pytest.approx(2.31 * 30)


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

NO_PRETRAINED = {"found": None, "looked_in": ["nowhere"], "hub": "not reachable: test"}


def test_without_a_checkpoint_a_model_is_trained_and_its_gamma_beta_have_moved(monkeypatch):
    from nanonorm.gpt_config import GPTConfig
    from nanonorm.studies import ln_params

    monkeypatch.setitem(ln_params.TRAINING, "quick", {**ln_params.TRAINING["quick"], "steps": 6})
    params, source = ln_params.load_parameters(None, mode="quick", pretrained=NO_PRETRAINED)
    r = ln_params.layernorm_parameters(params, label=source["label"])
    c = GPTConfig.preset("tiny")
    assert source["kind"] == "trained" and source["training"]["steps_run"] == 6
    assert "trained here for 6 steps" in r["label"]
    assert len(r["modules"]) == 2 * c.n_layer + 1
    assert r["gamma"]["count"] == r["beta"]["count"] == (2 * c.n_layer + 1) * c.n_embd
    # a fresh model has γ = 1 and β = 0 exactly: these moved
    assert r["gamma"]["max_change"] > 1e-3 and r["beta"]["max_change"] > 1e-3
    assert r["gamma"]["min"] < r["gamma"]["max"]
    assert sum(r["gamma"]["hist"]) == r["gamma"]["count"]


def test_layernorm_parameters_read_from_a_checkpoint(tmp_path):
    from nanonorm.gpt import GPT, GPTConfig
    from nanonorm.studies import ln_params

    model = GPT(GPTConfig.preset("tiny"))
    for name, p in model.parameters().items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            p[...] = 0.3                              # the note's "trained GPT-2" range
    model.save(tmp_path)
    params, source = ln_params.load_parameters(tmp_path)
    r = ln_params.layernorm_parameters(params, label=source["label"])
    assert source["kind"] == "checkpoint" and str(tmp_path) in r["label"]
    assert r["gamma"]["share_in_0.2_0.4"] == 1.0
    assert r["gamma"]["mean"] == pytest.approx(0.3, rel=1e-6)
    assert r["beta"]["share_abs_below_0.1"] == 1.0


def test_a_gpt2_in_the_local_hugging_face_cache_is_found_and_used(tmp_path, monkeypatch):
    from nanonorm.gpt import GPT, GPTConfig
    from nanonorm.studies import ln_params

    model = GPT(GPTConfig.preset("tiny"), seed=3)
    repo = tmp_path / "models--gpt2"
    model.save(repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ln_params, "hub_reachable", lambda *a, **k: pytest.fail("probed"))
    found = ln_params.find_pretrained()
    assert found["found"] == str(repo) and found["hub"] is None
    params, source = ln_params.load_parameters(None)
    assert source["kind"] == "pretrained"
    np.testing.assert_array_equal(params["transformer.wte.weight"],
                                  model.parameters()["transformer.wte.weight"])


def test_an_empty_cache_is_reported_with_where_it_looked(tmp_path, monkeypatch):
    from nanonorm.studies import ln_params

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ln_params, "hub_reachable", lambda *a, **k: "not reachable: offline")
    found = ln_params.find_pretrained()
    assert found["found"] is None and found["hub"] == "not reachable: offline"
    assert str(tmp_path / "models--gpt2") in found["looked_in"]


def test_hub_probe_tells_an_open_port_from_a_closed_one():
    import socket

    from nanonorm.studies import ln_params

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert ln_params.hub_reachable(server.getsockname(), timeout=3) == "reachable"
        port = server.getsockname()
    # the listening socket is closed now: nothing answers on that port
    assert ln_params.hub_reachable(port, timeout=3).startswith("not reachable")


# Study 7: parameter counts and weight tying -------------------------------------------------

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
        assert m["biases_share"] < 0.001                  # the note's "< 0.1%"


def test_pearson_of_an_array_with_itself_is_exactly_one_and_matches_numpy():
    from nanonorm.studies import param_counts

    rng = np.random.default_rng(0)
    for shape in [(7,), (256, 16), (3, 1000)]:
        a = rng.normal(size=shape).astype(np.float32)
        assert param_counts.pearson(a, a) == 1.0
        b = a + rng.normal(size=shape).astype(np.float32)
        assert param_counts.pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1],
                                                           rel=1e-12)


@pytest.fixture(scope="module")
def tying():
    from nanonorm.studies import param_counts
    return param_counts.weight_tying(preset="tiny", steps=5)


def test_tied_model_keeps_one_matrix_so_r_is_exactly_one(tying):
    t = tying["tied"]
    for when in ("before", "after"):
        assert t[when]["identical"] and t[when]["correlation"] == 1.0
    assert not t["has_lm_head_weight"]


def test_untied_copies_start_equal_and_drift_apart_when_trained(tying):
    u = tying["untied"]
    assert u["before"]["identical"] and u["before"]["correlation"] == 1.0
    assert not u["after"]["identical"] and u["after"]["max_abs_difference"] > 0
    assert u["after"]["correlation"] < 1.0
    assert u["has_lm_head_weight"]


def test_tied_and_untied_start_from_the_same_model_and_data(tying):
    # same weights (the untied head a copy of wte) and the same first batch: same first loss
    assert tying["tied"]["losses"][0] == tying["untied"]["losses"][0]
    assert tying["tied"]["losses"][1:] != tying["untied"]["losses"][1:]
    for v in (tying["tied"], tying["untied"]):
        assert v["allocated"] == v["analytic"]
    assert tying["untied"]["allocated"] - tying["tied"]["allocated"] == 256 * 16  # vocab × C


# Study 8: timing -------------------------------------------------------------------------------

def test_time_model_reports_every_phase_and_says_which_it_is_in():
    from nanonorm.studies import timing

    heard = []
    r = timing.time_model(preset="tiny", batch=1, seq=8, repeats=2, steps=2, impl="reference",
                          tie_weights=False, progress=heard.append)
    assert heard == ["construction", "first forward", "forward 1/2", "forward 2/2",
                     "training step 1/2", "training step 2/2"]
    assert r["tie_weights"] is False and r["parameters"] == 15_296   # tiny, untied
    assert r["load"]["samples"] >= 1
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
