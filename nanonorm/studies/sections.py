"""The report's prose: one function per study turning its numbers into document blocks.

Every sentence that states a finding is computed from the study's numbers; the seed's own
figures are quoted from the seed's module-level SEED dicts, with the file they come from.
"""
from __future__ import annotations

import math

from . import attention_scaling, instability, layernorm_stats, ln_params, param_counts, timing


def _g(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}"


def _seed(source: str, items: dict) -> tuple:
    return ("list", [f"seed ({source}): {k}: {v}" for k, v in items.items()])


# 1 -------------------------------------------------------------------------------------------

def repeated_products(r: dict, figs: list[str]) -> list[tuple]:
    rows = []
    for panel in r.values():
        tag = f"B ~ {panel['b']}, {panel['dtype']}" + (", LayerNorm" if panel["layer_norm"] else "")
        for s, x in panel["scales"].items():
            rows.append([tag, s, _g(x["growth_per_step"]), _g(x["final_norm"]),
                         x["overflow_step"] if x["overflow_step"] is not None else "–",
                         x["underflow_step"] if x["underflow_step"] is not None else "–"])
    sc, raw, half, ln = (r[k] for k in ("scaled_float32", "raw_float32", "scaled_float16",
                                        "raw_float32_layernorm"))
    n = sc["n"]
    sc_norms = [v for x in sc["scales"].values() for v in x["norms"]]
    overflows = [f"s = {s} at step {x['overflow_step']}" for s, x in raw["scales"].items()
                 if x["overflow_step"] is not None]
    ln_norms = [v for x in ln["scales"].values() for v in x["norms"][1:]]
    findings = [
        f"B ~ N(0, 1/n), float32: growth per step {_g(sc['scales']['0.5']['growth_per_step'])} "
        f"at s = 0.5, {_g(sc['scales']['1.0']['growth_per_step'])} at s = 1, "
        f"{_g(sc['scales']['2.0']['growth_per_step'])} at s = 2: vanishes, stays roughly flat, "
        f"explodes, as the seed says. Within {sc['steps']} steps float32 neither overflows nor "
        f"underflows here (norms span {_g(min(sc_norms))} to {_g(max(sc_norms))}).",
        f"The same chain in float16 reaches both limits: "
        + "; ".join(f"s = {s}: " + (f"overflow at step {x['overflow_step']}"
                                    if x["overflow_step"] is not None else
                                    f"underflow to 0 at step {x['underflow_step']}"
                                    if x["underflow_step"] is not None else "stays in range")
                    for s, x in half["scales"].items()) + ".",
        f"B ~ N(0, 1), float32: at s = 1 the norm grows "
        f"{_g(raw['scales']['1.0']['growth_per_step'])}× "
        f"per step (sqrt({n}) = {_g(math.sqrt(n))}), so even s = 0.5 grows "
        f"{_g(raw['scales']['0.5']['growth_per_step'])}× per step; overflow to inf: "
        + (", ".join(overflows) if overflows else "none within the steps run") + ".",
        f"With a LayerNorm after each product (B ~ N(0, 1)) every s stays between "
        f"{min(ln_norms):.5f} and {max(ln_norms):.5f} (≈ sqrt({n}·{n}) = {n}: each row has "
        "mean 0 and std 1, whatever s is).",
    ]
    return [("h", 2, "1. Repeated products vanish or explode; LayerNorm keeps them bounded"),
            ("p", f"A_k = s · A_(k−1) · B_k with {n}×{n} matrices, A_0 ~ N(0, 1), "
                  f"s ∈ {{0.5, 1, 1.5, 2}}, {sc['steps']} steps; every s reuses the same A_0 and "
                  "B_k, so the curves differ by s alone. The chain runs in the dtype shown; "
                  "norms are computed in float64 so squaring adds no overflow of its own."),
            _seed("1-layernorm-stability.md §5.1", instability.SEED),
            ("list", findings),
            ("table", ["chain", "s", "growth / step", "‖A_50‖_F", "overflow step",
                       "underflow step"], rows),
            *[("img", f, "Frobenius norm per step; ▲ an entry overflowed to inf, ▼ every entry "
                         "underflowed to 0") for f in figs]]


# 2, 3 ----------------------------------------------------------------------------------------

def layernorm_scope(r: dict, figs: list[str]) -> list[tuple]:
    rows = []
    for label, e in r["shapes"].items():
        for name, sc in e["scopes"].items():
            rows.append([label, name, str(tuple(sc["normalized_shape"])),
                         f"{e['input']['mean']:.3f} / {e['input']['std']:.3f}",
                         f"{sc['mean']:.2g} / {sc['std']:.6f}",
                         f"{max(abs(m) for m in sc['group_means']):.1e}",
                         f"{min(sc['group_stds']):.6f}–{max(sc['group_stds']):.6f}",
                         f"{min(sc['column_means']):.2f}…{max(sc['column_means']):.2f}",
                         f"{sc['pearson_r']:.4f}"])
    s = layernorm_stats.SEED
    return [("h", 2, "2. What LayerNorm does to a matrix's statistics"),
            ("p", f"N({r['mu']:g}, {r['sigma']:g}²) matrices normalised with "
                  "`nanonorm.functional.layer_norm` over the last dim (`normalized_shape = "
                  "(cols,)`, each row normalised over its columns: the seed's \"per column\", "
                  "PyTorch's `LayerNorm(cols)`) and over the whole tensor (`normalized_shape = "
                  "(rows, cols)`). Stds are population stds (ddof = 0), the variance LayerNorm "
                  "divides by; `torch.std`'s default (ddof = 1) reads sqrt(N/(N−1)) higher, "
                  "e.g. 1.017 for N = 30."),
            ("list", [f"seed (1-layernorm-stability.md §4.1.2): before LN mean "
                      f"{s['before_ln']['mean']}, std {s['before_ln']['std']}; after LN mean "
                      f"{s['after_ln']['mean']}, std {s['after_ln']['std']}",
                      f"seed (§5.2): per column: {s['per_column']}; whole tensor: "
                      f"{s['whole_tensor']}"]),
            ("table", ["matrix", "scope", "normalized_shape", "input mean / std",
                       "output mean / std", "max abs(mean) along normalised dims",
                       "std along normalised dims", "column means (not normalised)",
                       "Pearson r with input"], rows),
            ("p", "Whole-tensor LayerNorm is one affine map of every entry, so r = 1; "
                  "per-row LayerNorm gives each row its own shift and scale, so r < 1, and the "
                  "column means stay away from 0."),
            *[("img", f, "Output entry against input entry; colour = row for the per-row scope")
              for f in figs]]


def gamma_beta(r: dict, figs: list[str]) -> list[tuple]:
    rows = [[f"{t['gamma']:g}", f"{t['beta']:g}", f"{round(t['mean'], 6) + 0.0:.6f}",
             f"{t['std']:.6f}"] for t in r["table"]]
    s = layernorm_stats.SEED["gamma_3_beta_5"]
    return [("h", 2, "3. γ and β set the output's std and mean"),
            ("p", f"LayerNorm over the last dim of a {r['shape'][0]}×{r['shape'][1]} "
                  f"N({r['mu']:g}, {r['sigma']:g}²) matrix with weight = γ and bias = β "
                  "everywhere."),
            ("list", [f"seed (1-layernorm-stability.md §5.3): γ = 3, β = 5 gives mean "
                      f"{s['mean']}, std {s['std']}"]),
            ("table", ["γ", "β", "output mean", "output std"], rows),
            *[("img", f, "Output histograms: β moves the distribution, γ stretches it")
              for f in figs]]


# 4, 5 ----------------------------------------------------------------------------------------

def qk_std(r: dict, figs: list[str]) -> list[tuple]:
    one, sw = r["single"], r["sweep"]
    small = [abs(v - 1) for d, v in zip(sw["d"], sw["std_qk_scaled"]) if d < 16]
    large = [abs(v - 1) for d, v in zip(sw["d"], sw["std_qk_scaled"]) if d >= 16]
    return [("h", 2, "4. Why attention divides QKᵀ by sqrt(d)"),
            ("p", f"Q and K are {one['m']}×d with N(0, 1) entries; each entry of QKᵀ sums d "
                  "products of independent unit-variance numbers, so its variance is d."),
            _seed("2-attention-scaling.md §3.1–3.2", {k: attention_scaling.SEED[k]
                                                      for k in ("std_qk_50", "sweep")}),
            ("table", ["", "std(Q)", "std(K)", "std(QKᵀ)", "sqrt(d)", "std(QKᵀ / sqrt(d))"],
             [[f"{one['m']}×{one['d']}", f"{one['std_q']:.4f}", f"{one['std_k']:.4f}",
               f"{one['std_qk']:.4f}", f"{one['sqrt_d']:.4f}", f"{one['std_qk_scaled']:.4f}"]]),
            ("p", f"Sweep d = {sw['d'][0]}…{sw['d'][-1]}, {sw['trials']} draw(s) per d: "
                  f"std(QKᵀ / sqrt(d)) stays within {100 * max(large):.1f}% of 1 for d ≥ 16 "
                  f"(within {100 * max(small, default=0):.1f}% for d < 16, where a single draw "
                  "of few products scatters more)."),
            *[("img", f, "Left: std(QKᵀ) against sqrt(d). Right: after dividing by sqrt(d)")
              for f in figs]]


def softmax_scaling(r: dict, figs: list[str]) -> list[tuple]:
    def mean(xs):
        return sum(xs) / len(xs)

    rows = [[label, f"{v['score_std']:.3f}", f"{mean(v['row_max_p']):.3f}",
             f"{min(v['row_max_p']):.3f}–{max(v['row_max_p']):.3f}",
             f"{mean(v['row_entropy']):.3f}"]
            for label, v in (("softmax(QKᵀ)", r["raw"]),
                             ("softmax(QKᵀ / sqrt(d))", r["scaled"]))]
    sw = r["temperature_sweep"]
    sweep_rows = [[_g(t, 4), f"{p:.3f}", f"{h:.3f}"]
                  for t, p, h in zip(sw["temperature"], sw["mean_max_p"], sw["mean_entropy"])]
    return [("h", 2, "5. Softmax before and after scaling, and temperature"),
            ("p", f"Scores QKᵀ of {r['m']}×{r['d']} N(0, 1) matrices, softmax and log-softmax "
                  f"by `nanonorm.functional` along each row of {r['m']} keys (uniform entropy "
                  f"log {r['m']} = {r['uniform_entropy']:.3f} nats)."),
            _seed("2-attention-scaling.md §4.2, §5.3", {k: attention_scaling.SEED[k]
                                                        for k in ("softmax", "temperature")}),
            ("table", ["", "score std", "mean max prob", "max prob range", "mean entropy (nats)"],
             rows),
            ("p", f"softmax(QKᵀ, temperature = sqrt(d)) equals softmax(QKᵀ / sqrt(d)) to "
                  f"{r['max_abs_diff_scaled_vs_temperature']:.1e}: dividing the scores by "
                  "sqrt(d) is sampling at temperature sqrt(d). The sweep below applies the "
                  "temperature to the unscaled scores."),
            ("table", ["temperature T", "mean max prob", "mean entropy (nats)"], sweep_rows),
            *[("img", f, "Probabilities and −log-probabilities before vs after scaling, per-row "
                         "max probability and entropy, and the temperature sweep") for f in figs]]


# 6 -------------------------------------------------------------------------------------------

def ln_parameters(r: dict, figs: list[str]) -> list[tuple]:
    g, b = r["gamma"], r["beta"]

    def spread(x):
        p = x["percentiles"]
        return f"{x['mean']:.4g} ± {x['std']:.3g} (5–95%: {p['p5']:.3g} … {p['p95']:.3g})"

    notes = ["Pretrained GPT-2 weights cannot be downloaded on this offline machine; pass "
             "`--checkpoint DIR` (a GPT-2 checkpoint directory: `model.safetensors` + "
             "`config.json`, or a local Hugging Face cache) to measure a trained model."]
    if r.get("source") == "checkpoint":
        notes.append("The seed's figures are for the trained GPT-2 release; a different model, "
                     "e.g. a small `nanonorm train` checkpoint, need not match them.")
    else:
        notes.append("No checkpoint was given, so this is a **freshly initialised** model: "
                     "γ = 1 and β = 0 by construction, nothing like the trained figures the "
                     "seed reports. The comparison below is the seed's quote against that.")
    return [("h", 2, "6. LayerNorm parameters of a GPT-2 model"),
            ("p", f"Every γ (weight) and β (bias) of the {len(r['modules'])} LayerNorms "
                  f"(ln_1, ln_2 per block and ln_f) of: {r['label']}."),
            ("list", notes),
            ("table", ["", "seed: trained GPT-2 (2-attention-scaling.md §4.3)",
                       "measured on this model", "seed's claim measured"],
             [["γ", ln_params.SEED["gamma"], spread(g),
               f"{100 * g['share_in_0.2_0.4']:.1f}% of {g['count']:,} in [0.2, 0.4]"],
              ["β", ln_params.SEED["beta"], spread(b),
               f"{100 * b['share_abs_below_0.1']:.1f}% of {b['count']:,} with abs(β) < 0.1"]]),
            *[("img", f, "Histograms of all LayerNorm γ and β (log count axis)") for f in figs]]


# 7 -------------------------------------------------------------------------------------------

def parameters(r: dict, figs: list[str]) -> list[tuple]:
    c, t = r["counts"], r["tying"]
    rows = [[name, m["n_layer"], m["n_head"], m["n_embd"], "yes" if m["tie_weights"] else "no",
             f"{m['total']:,}", f"{m['weights']:,}", f"{m['biases']:,}",
             f"{100 * m['biases_share']:.3f}%", param_counts.SEED.get(name, "")]
            for name, m in c["models"].items()]
    mv = c["model5_vs_gpt2"]
    same = "equals" if mv["untied_minus_unembedding"] == mv["tied"] else "differs from"
    tie_rows = [[k, f"{v['correlation']:.4f}", "yes" if v["has_lm_head_weight"] else "no",
                 f"{v['allocated']:,}", f"{v['analytic']:,}"]
                for k, v in ((k, t[k]) for k in ("tied", "untied"))]
    return [("h", 2, "7. Parameter counts and weight tying"),
            ("p", "Counts from `GPTConfig`'s closed formulas (LayerNorm gains count as weights, "
                  "LayerNorm shifts as biases); the allocated arrays of small models are "
                  "checked against them below."),
            ("table", ["model", "layers", "heads", "C", "tied", "parameters", "weights",
                       "biases", "bias share", "seed (3-gpt2-parameter-counts.md)"], rows),
            ("p", f"Model 5 (GPT-2 small with its own unembedding): {mv['untied']:,} − "
                  f"{mv['unembedding']:,} (unembedding, 50257 × 768) = "
                  f"{mv['untied_minus_unembedding']:,}, which {same} GPT-2 small's "
                  f"{mv['tied']:,}. Seed: {param_counts.SEED['model5']}; weights "
                  f"{param_counts.SEED['weights_share']}, biases "
                  f"{param_counts.SEED['biases_share']}."),
            ("p", f"Weight tying on the '{t['preset']}' preset: the Pearson correlation between "
                  "the embedding `transformer.wte.weight` and the unembedding the head uses "
                  f"(seed: {param_counts.SEED['tying']})."),
            ("table", ["model", "corr(embedding, unembedding)", "lm_head.weight stored",
                       "allocated parameters", "analytic count"], tie_rows),
            *[("img", f, "Parameters per component, and embedding vs unembedding entries")
              for f in figs]]


# 8 -------------------------------------------------------------------------------------------

def timing_section(r: dict, figs: list[str]) -> list[tuple]:
    s = r["size"]
    rows = []
    for x in r["rows"]:
        if not x["available"]:
            rows.append([x["provider"], "not run: " + x["note"], "", "", "", ""])
            continue
        rows.append([x["provider"], f"{x['construction_s']:.3g} s",
                     f"{x['warmup_forward_s']:.3g} s",
                     f"{x['forward_total_s']:.3g} s (median {x['forward_median_s']:.3g} s, "
                     f"{x['tokens_per_s_forward']:,.0f} tokens/s)",
                     f"{x['train_total_s']:.3g} s (step 1 {x['train_step_s'][0]:.3g} s, then "
                     f"median {x['train_median_s']:.3g} s)", x["note"]])
    sd = timing.SEED
    cpu_f, gpu_f = 20.0, 0.03  # the seed's "~20 s" and "~0.03 s", for its ratio claim
    params = next((x["parameters"] for x in r["rows"] if x["available"]), None)
    return [("h", 2, "8. CPU vs GPU timing"),
            ("p", f"Size used here: **'{s['preset']}' preset ({params or 0:,}"
                  f" parameters), B = {s['batch']}, T = {s['seq']}** ({r['mode']} run; "
                  f"{r['repeats']} forwards, {r['steps']} training steps of forward + backward + "
                  "AdamW). The seed times B = 8, T = 1024, which a NumPy forward cannot do within "
                  "this report's few-minute budget on a small CPU, so the batch is smaller and "
                  "the numbers are not comparable one-to-one with the seed's."
                  + (f" The 1-minute load average when timing started was "
                     f"{r['load_average_1min']:.2f} on {r['cpu_count']} logical cores: other "
                     "processes competing for the CPU inflate and scatter these times."
                     if r.get("load_average_1min") is not None else "")),
            *([("p", "**This machine has no GPU**, so only the CPU side is measured here; "
                     "the GPU figures below are the seed's.")]
              if not any(x["available"] and x["device"] == "cuda" for x in r["rows"])
              else []),
            ("table", ["provider", "construction", "first forward (compiles kernels)",
                       f"{r['repeats']} forwards", f"{r['steps']} training steps", "note"], rows),
            ("p", f"The seed's figures ({sd['size']}, PyTorch, 4-gpt2-cpu-vs-gpu-timing.md), "
                  "quoted:"),
            ("table", ["", "CPU", "GPU"],
             [[label, sd[key]["cpu"], sd[key]["gpu"]] for key, label in (
                 ("construction", "construction"), ("forward_5_repeats", "forward, 5 repeats"),
                 ("train_5_steps", "5 training steps"))]),
            ("p", f"The seed says \"{sd['claim']}\"; its own figures give {cpu_f:g} / {gpu_f:g} "
                  f"≈ {cpu_f / gpu_f:.0f}×, under 3 orders of magnitude. It does not say "
                  "whether its forward figure is per repeat or for all five."),
            *[("img", f, "Seconds per phase and provider (log scale)") for f in figs]]
