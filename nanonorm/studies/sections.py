"""The report's prose for studies 1-5: one function per study turning its numbers into
document blocks (studies 6-9: sections_gpt).

Every sentence that states a finding is computed from the study's numbers; the notes' own
figures are quoted from each study module's NOTE dict, cited by the note's title.
"""
from __future__ import annotations

import math

from . import attention_scaling, instability, layernorm_stats
from .sources import cite, quoted


def _g(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}g}"


def source(number: int, where: str) -> tuple:
    return ("p", f"Source: {cite(number, where)}.")


def span(values, digits: int = 3) -> str:
    lo, hi = f"{min(values):.{digits}g}", f"{max(values):.{digits}g}"
    return lo if lo == hi else f"{lo} … {hi}"


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
        f"explodes, as the note says. Within {sc['steps']} steps float32 neither overflows nor "
        f"underflows here (norms span {_g(min(sc_norms))} to {_g(max(sc_norms))}).",
        "The same chain in float16 reaches both limits: "
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
            source(1, "§2.1, §3.4.1, §4.1.1 and §5.1"),
            quoted(1, instability.NOTE),
            ("p", f"A_k = s · A_(k−1) · B_k with {n}×{n} matrices, A_0 ~ N(0, 1), "
                  f"s ∈ {{0.5, 1, 1.5, 2}}, {sc['steps']} steps; every s reuses the same A_0 and "
                  "B_k, so the curves differ by s alone. The chain runs in the dtype shown; "
                  "norms are computed in float64 so squaring adds no overflow of its own."),
            ("list", findings),
            ("table", ["chain", "s", "growth / step", "‖A_50‖_F", "overflow step",
                       "underflow step"], rows),
            *[("img", f, "Frobenius norm per step; ▲ an entry overflowed to inf, ▼ every entry "
                         "underflowed to 0") for f in figs]]


# 2, 3 ----------------------------------------------------------------------------------------

def layernorm_scope(r: dict, figs: list[str]) -> list[tuple]:
    rows, found = [], {}
    for law, entry in r["laws"].items():
        for label, e in entry["shapes"].items():
            for scope, st in e["scopes"].items():
                found[law, label, scope] = st
                rows.append([law, label, scope, span(st["row_means"], 2),
                             span(st["row_stds"], 4), span(st["column_means"], 2),
                             span(st["column_stds"], 4), f"{st['pearson_r']:.4f}"])
    n = layernorm_stats.NOTE
    laws, shapes = list(r["laws"]), list(next(iter(r["laws"].values()))["shapes"])

    def worst(scope, key, target):
        return max(abs(v - target) for (_, _, s), st in found.items() if s == scope
                   for v in st[key])
    last_cols = [v for (_, _, s), st in found.items() if s == "last dim"
                 for v in st["column_means"]]
    first_rows = [v for (_, _, s), st in found.items() if s == "first dim"
                  for v in st["row_means"]]
    big = r["laws"][laws[-1]]["shapes"][shapes[-1]]["input"]
    z = r["note_input_check"]
    findings = [
        f"Over the last dim (`normalized_shape = (cols,)`, what `nn.LayerNorm(cols)` and "
        f"GPT-2 do): every row has mean 0 (within {worst('last dim', 'row_means', 0):.1e}) and "
        f"std 1 (within {worst('last dim', 'row_stds', 1):.1e}), while the column means span "
        f"{span(last_cols, 2)}: the columns are not normalised.",
        f"Over the first dim (each column over its rows, LayerNorm of the transpose): every "
        f"column has mean 0 (within {worst('first dim', 'column_means', 0):.1e}) and std 1 "
        f"(within {worst('first dim', 'column_stds', 1):.1e}), and the row means span "
        f"{span(first_rows, 2)}. This is the note's claim as written (§5.2: mean ≈ 0 and std "
        "≈ 1 per column, rows not normalised).",
        "The note says it used `nn.LayerNorm(normalized_shape)`, which normalises trailing "
        "dims only: on a (rows, cols) matrix that is the last-dim reading, where the column "
        "means are not ≈ 0. Its statement holds for the first-dim reading, which "
        "`nn.LayerNorm` gives only on the transposed matrix; which one the note ran, it does "
        "not say.",
        "Whole tensor: one shift and one scale for every entry, so Pearson r = 1 (as the note "
        "says); each per-row or per-column reading gives every row (column) its own shift and "
        "scale, so r < 1 (the note: \"correlation decreases slightly\").",
        f"Input: the note's method draws N(0, 1) (§3.3.1) but its table (§4.1.2) gives mean "
        f"{n['before_ln']['mean']} and std {n['before_ln']['std']} before LN. A mean of "
        f"{n['before_ln']['mean']} from N(0, 1) entries lies "
        + " and ".join(f"{v:.0f} ({k})" for k, v in z.items())
        + " standard errors of the mean (1/sqrt(entries)) above 0: the table cannot come "
        f"from the stated input. Both are run here: N(0, 1) as the method says, and "
        f"{laws[-1]}, near the table (the {shapes[-1]} draw has mean {big['mean']:.2f}, std "
        f"{big['std']:.2f}).",
    ]
    return [("h", 2, "2. What LayerNorm does to a matrix's statistics: which dim it normalises"),
            source(1, "§3.3.1, §3.4.2, §4.1.2 and §5.2"),
            quoted(1, {
                "before LN": f"mean {n['before_ln']['mean']}, std {n['before_ln']['std']}",
                "after LN": f"mean {n['after_ln']['mean']}, std {n['after_ln']['std']}",
                "per column": n["per_column"], "whole tensor": n["whole_tensor"],
                "input": n["method_input"]}),
            ("p", "Each matrix normalised by `nanonorm.functional.layer_norm` three ways: "
                  + "; ".join(f"**{k}**: {v}" for k, v in r["scopes"].items()) + ". Stds are "
                  "population stds (ddof = 0), the variance LayerNorm divides by; "
                  "`torch.std`'s default (ddof = 1) reads sqrt(N/(N−1)) higher, e.g. 1.017 "
                  "for N = 30, the size of the note's \"std 1.02\"."),
            ("list", findings),
            ("table", ["input", "matrix", "normalised over", "row means", "row stds",
                       "column means", "column stds", "Pearson r with input"], rows),
            *[("img", f, "Row means (○) and column means (×) of the output for each reading")
              for f in figs]]


def gamma_beta(r: dict, figs: list[str]) -> list[tuple]:
    rows = [[f"{t['gamma']:g}", f"{t['beta']:g}", f"{round(t['mean'], 6) + 0.0:.6f}",
             f"{t['std']:.6f}"] for t in r["table"]]
    s = layernorm_stats.NOTE["gamma_3_beta_5"]
    return [("h", 2, "3. γ and β set the output's std and mean"),
            source(1, "§3.4.3, §4.1.3 and §5.3"),
            ("p", f"LayerNorm over the last dim of a {r['shape'][0]}×{r['shape'][1]} "
                  f"N({r['mu']:g}, {r['sigma']:g}²) matrix with weight = γ and bias = β "
                  "everywhere."),
            quoted(1, {"γ = 3, β = 5": f"mean {s['mean']}, std {s['std']}"}),
            ("table", ["γ", "β", "output mean", "output std"], rows),
            *[("img", f, "Output histograms: β moves the distribution, γ stretches it")
              for f in figs]]


# 4, 5 ----------------------------------------------------------------------------------------

def qk_std(r: dict, figs: list[str]) -> list[tuple]:
    one, sw = r["single"], r["sweep"]
    small = [abs(v - 1) for d, v in zip(sw["d"], sw["std_qk_scaled"]) if d < 16]
    large = [abs(v - 1) for d, v in zip(sw["d"], sw["std_qk_scaled"]) if d >= 16]
    return [("h", 2, "4. Why attention divides QKᵀ by sqrt(d)"),
            source(2, "§2.1, §3.1, §3.2 and §4.1"),
            quoted(2, {"Q, K of 50×50": attention_scaling.NOTE["std_qk_50"],
                       "sweep": attention_scaling.NOTE["sweep"]}),
            ("p", f"Q and K are {one['m']}×d with N(0, 1) entries; each entry of QKᵀ sums d "
                  "products of independent unit-variance numbers, so its variance is d."),
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
            source(2, "§2.2, §3.3, §4.2 and §5.3"),
            quoted(2, {k: attention_scaling.NOTE[k] for k in ("softmax", "temperature")}),
            ("p", f"Scores QKᵀ of {r['m']}×{r['d']} N(0, 1) matrices, softmax and log-softmax "
                  f"by `nanonorm.functional` along each row of {r['m']} keys (uniform entropy "
                  f"log {r['m']} = {r['uniform_entropy']:.3f} nats)."),
            ("table", ["", "score std", "mean max prob", "max prob range", "mean entropy (nats)"],
             rows),
            ("p", f"softmax(QKᵀ, temperature = sqrt(d)) equals softmax(QKᵀ / sqrt(d)) to "
                  f"{r['max_abs_diff_scaled_vs_temperature']:.1e}: dividing the scores by "
                  "sqrt(d) is sampling at temperature sqrt(d). The sweep below applies the "
                  "temperature to the unscaled scores."),
            ("table", ["temperature T", "mean max prob", "mean entropy (nats)"], sweep_rows),
            *[("img", f, "Probabilities and −log-probabilities before vs after scaling, per-row "
                         "max probability and entropy, and the temperature sweep") for f in figs]]
