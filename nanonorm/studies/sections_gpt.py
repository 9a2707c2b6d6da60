"""The report's prose for studies 6-9 (the GPT ones): numbers in, document blocks out; the
notes' figures come from each study module's NOTE dict."""
from __future__ import annotations

import math

from . import convergence, ln_params, param_counts, timing
from .sections import source, span
from .sources import quoted


# 6 -------------------------------------------------------------------------------------------

def ln_parameters(r: dict, figs: list[str]) -> list[tuple]:
    g, b, src = r["gamma"], r["beta"], r["source"]

    def spread(x):
        p = x["percentiles"]
        return f"{x['mean']:.4g} ± {x['std']:.3g} (5–95%: {p['p5']:.3g} … {p['p95']:.3g})"

    notes = []
    if src["kind"] == "checkpoint":
        notes.append("Measured on the checkpoint given with `--checkpoint`. Note 2's figures "
                     "are for the released GPT-2; another model, e.g. a small `nanonorm train` "
                     "checkpoint, need not match them.")
    else:
        pre = src["pretrained"]
        if pre["found"]:
            notes.append(f"No `--checkpoint` given; the pretrained GPT-2 was found in the "
                         f"local Hugging Face cache ({pre['found']}): the model the note "
                         "measured.")
        else:
            notes.append(f"No `--checkpoint` given, and no pretrained GPT-2 in the local "
                         f"Hugging Face cache (looked in {', '.join(pre['looked_in'])}); "
                         f"huggingface.co: {pre['hub']}. Pass `--checkpoint DIR` (a GPT-2 "
                         "checkpoint directory or a Hugging Face cache's `models--gpt2`) to "
                         "measure the trained GPT-2 the note describes.")
        if src["kind"] == "trained":
            t = src["training"]
            notes.append(
                f"So this is the {src['label']} (B = {t['batch']}, T = {t['seq']}, constant "
                f"lr {t['lr']:g}, AdamW as `configure_optimizer` sets it, on the standard "
                f"library's source as bytes): loss {t['first_loss']:.3f} → {t['last_loss']:.3f}"
                f" in {t['seconds']:.1f} s"
                + (" (stopped by the report's time budget)" if t["stopped_by_time"] else "")
                + f". Its γ moved by up to {g['max_change']:.3g} from the initial 1 and its β "
                f"by up to {b['max_change']:.3g} from 0. A small model trained this briefly is not "
                "GPT-2: the comparison below says where its γ and β went, not whether "
                "GPT-2's sit where the note says.")
    return [("h", 2, "6. LayerNorm parameters of a GPT-2 model"),
            source(2, "§3.4 and §4.3"),
            quoted(2, {"γ": ln_params.NOTE["gamma"], "β": ln_params.NOTE["beta"],
                       "reading": ln_params.NOTE["reading"]}),
            ("p", f"Every γ (weight) and β (bias) of the {len(r['modules'])} LayerNorms "
                  f"(ln_1, ln_2 per block and ln_f) of: {r['label']}."),
            ("list", notes),
            ("table", ["", "note 2 §4.3: trained GPT-2", "measured on this model",
                       "the note's claim, measured"],
             [["γ", ln_params.NOTE["gamma"], spread(g),
               f"{100 * g['share_in_0.2_0.4']:.1f}% of {g['count']:,} in [0.2, 0.4]"],
              ["β", ln_params.NOTE["beta"], spread(b),
               f"{100 * b['share_abs_below_0.1']:.1f}% of {b['count']:,} with abs(β) < 0.1"]]),
            *[("img", f, "Histograms of all LayerNorm γ and β (log count axis)") for f in figs]]


# 7 -------------------------------------------------------------------------------------------

def parameters(r: dict, figs: list[str]) -> list[tuple]:
    c, t = r["counts"], r["tying"]
    note = param_counts.NOTE
    rows = [[name, m["n_layer"], m["n_head"], m["n_embd"], "yes" if m["tie_weights"] else "no",
             f"{m['total']:,}", f"{m['weights']:,}", f"{m['biases']:,}",
             f"{100 * m['biases_share']:.3f}%", note.get(name, "")]
            for name, m in c["models"].items()]
    mv = c["model5_vs_gpt2"]
    same = "equals" if mv["untied_minus_unembedding"] == mv["tied"] else "differs from"
    tie_rows = [[k, f"{v['before']['correlation']:.6f}", f"{v['after']['correlation']:.6f}",
                 "yes" if v["after"]["identical"] else "no",
                 f"{v['after']['max_abs_difference']:.3g}",
                 f"{v['losses'][0]:.3f} → {v['losses'][-1]:.3f}",
                 "yes" if v["has_lm_head_weight"] else "no",
                 f"{v['allocated']:,}", f"{v['analytic']:,}"]
                for k, v in ((k, t[k]) for k in ("tied", "untied"))]
    tied, untied = t["tied"]["after"], t["untied"]["after"]
    return [("h", 2, "7. Parameter counts and weight tying"),
            source(3, "§3.2, §4, §5 and §6"),
            quoted(3, {"GPT-2 small": note["gpt2"], "Model 5": note["model5"],
                       "weight tying": note["tying"], "weights": note["weights_share"],
                       "biases": note["biases_share"]}),
            ("p", "Counts from `GPTConfig`'s closed formulas (LayerNorm gains count as weights, "
                  "LayerNorm shifts as biases); the allocated arrays of small models are "
                  "checked against them below."),
            ("table", ["model", "layers", "heads", "C", "tied", "parameters", "weights",
                       "biases", "bias share", "note 3"], rows),
            ("p", f"Model 5 (GPT-2 small with its own unembedding): {mv['untied']:,} − "
                  f"{mv['unembedding']:,} (unembedding, 50257 × 768) = "
                  f"{mv['untied_minus_unembedding']:,}, which {same} GPT-2 small's "
                  f"{mv['tied']:,} (note 3: {note['model5']})."),
            ("p", f"Weight tying, on two '{t['preset']}' models that start from the same "
                  "weights (the untied one's unembedding `lm_head.weight` a copy of its "
                  f"embedding `transformer.wte.weight`) and train {t['steps']} steps on the "
                  f"same batches (B = {t['batch']}, T = {t['seq']}, lr {t['lr']:g}). r is the "
                  "Pearson correlation of the embedding with the matrix the head multiplies "
                  "by."),
            ("table", ["model", "r at step 0", f"r after {t['steps']} steps", "one matrix",
                       "max abs difference", "training loss", "lm_head.weight stored",
                       "allocated parameters", "analytic count"], tie_rows),
            ("p", f"Tied, r = {tied['correlation']:.6f} at every step: the head multiplies by "
                  "the embedding itself, so there is one matrix and r = 1 by construction. "
                  f"Untied, the copies drift apart as soon as they train: r = "
                  f"{untied['correlation']:.6f} after {t['steps']} steps. So r = 1 on a "
                  "checkpoint says its two matrices are equal, as note 3 found for GPT-2, "
                  "whose checkpoint stores one matrix; it proves nothing about what tying "
                  "does to generalisation or stability, which the note also credits to it "
                  "(§5.1)."),
            *[("img", f, "Parameters per component, and embedding vs unembedding entries "
                         "after training") for f in figs]]


# 8 -------------------------------------------------------------------------------------------

def _load(load: dict) -> str:
    if load["mean_other_cores"] is None:
        return "not measured"
    text = (f"others used {load['mean_other_cores']:.2f} of {load['cores']} cores "
            f"(max {load['max_other_cores']:.2f}, {load['samples']} "
            f"sample{'s' if load['samples'] != 1 else ''})")
    return ("**busy**: " + text) if load["busy"] else text


def _row(x: dict) -> list:
    return [f"{x['construction_s']:.3g} s", f"{x['warmup_forward_s']:.3g} s",
            f"{x['forward_total_s']:.3g} s (median {x['forward_median_s']:.3g} s, "
            f"{x['tokens_per_s_forward']:,.0f} tokens/s)",
            f"{x['train_total_s']:.3g} s (step 1 {x['train_step_s'][0]:.3g} s, then "
            f"median {x['train_median_s']:.3g} s)", _load(x["load"])]


def timing_section(r: dict, figs: list[str]) -> list[tuple]:
    s, nd = r["size"], timing.NOTE
    run = [x for x in r["rows"] if x["available"]]
    rows = [[x["provider"], *_row(x), x["note"]] if x["available"]
            else [x["provider"], "not run: " + x["note"], "", "", "", "", ""] for x in r["rows"]]
    first = run[0] if run else {}
    what = (f"'{s['preset']}' preset" + (", untied" if first.get("tie_weights") is False
                                         and s["preset"] != "model5" else "")
            + f" ({first.get('parameters', 0):,} parameters)")
    text = [("p", f"Size used here: **{what}, B = {s['batch']}, T = {s['seq']}** ({r['mode']} "
                  f"run; {r['repeats']} forwards, {r['steps']} training steps of forward + "
                  "backward + AdamW). "
                  + ("Model 5 is GPT-2 small with its own unembedding, as the note times it."
                     if s["preset"] == "model5" else
                     "A tiny model with Model 5's layout (its own unembedding): `--quick` "
                     "checks the machinery; the full run times Model 5 itself.")
                  + " While each row runs, a thread samples every 0.25 s how many cores other "
                  "processes keep busy; a row is marked **busy** when they took 10% of the "
                  "cores or more on average, and its times may be inflated or scattered.")]
    busy = [x["provider"] for x in run + [n for n in r["note_rows"] if "load" in n]
            if x["load"]["busy"]]
    if busy:
        text.append(("p", f"**Warning: the machine was busy while timing {', '.join(busy)}**: "
                          "other processes competed for the CPU, so these times are not this "
                          "machine's speed and comparisons between rows are unreliable."))
    ref = next((x for x in run if x["impl"] == "reference"), None)
    fast = next((x for x in run if x["device"] == "cpu" and x["impl"] == "default"), None)
    if ref and fast:
        ratio = fast["train_total_s"] / ref["train_total_s"]
        if s["preset"] != "model5":
            why = (" At this toy size each call's fixed cost dominates, so the ratio says "
                   "nothing about the kernels.")
        elif ratio < 1:
            why = ""
        elif ref["load"]["busy"] or fast["load"]["busy"]:
            why = (" Numba slower than the reference while the machine was busy: the load, "
                   "not the kernels, is the likely cause; rerun on a quiet machine.")
        else:
            why = (" Numba slower than the reference on a quiet machine: a regression worth "
                   "a look.")
        text.append(("p", f"Numba / reference time for the {r['steps']} training steps: "
                          f"{ratio:.2f}.{why}"))
    if not any(x["device"] == "cuda" for x in run):
        text.append(("p", "**This machine has no GPU**, so only the CPU side is measured here; "
                          "the GPU figures below are the note's."))
    note_rows = []
    for n in r["note_rows"]:
        if "construction_s" in n:
            note_rows.append([n["provider"], *_row(n), f"peak RSS {n['peak_rss_GiB']:.1f} GiB"])
        else:
            why = n.get("skipped") or f"failed: {n.get('error')}"
            note_rows.append([n["provider"], f"not run: {why}", "", "", "", "", ""])
    cpu_f, gpu_f = 20.0, 0.03  # the note's "~20 s" and "~0.03 s", for its ratio claim
    head = ["provider", "construction", "first forward (compiles kernels)",
            f"{r['repeats']} forwards", f"{r['steps']} training steps", "load", "note"]
    return [("h", 2, "8. CPU vs GPU timing"),
            source(4, "§2–§5"),
            quoted(4, {"what it times": nd["size"] + ", PyTorch, a GPU such as an A100",
                       "forward pass": nd["claim"]}),
            *text,
            ("table", head, rows),
            *([("p", f"At the note's size ({nd['size']}), for each provider whose time "
                     f"projected from the row above (at least the per-token time, ×"
                     f"{r['note_size']['batch'] * r['note_size']['seq'] // (s['batch'] * s['seq'])}"
                     f" tokens) fits {r['note_size_budget_s']:.0f} s and whose memory fits: "
                     "each in a child process (`python -m bench --study` times GPT-2 small, "
                     "tied, the same way)."),
               ("table", head, note_rows)] if r["note_rows"] else []),
            ("p", f"Note 4's figures ({nd['size']}, PyTorch), quoted:"),
            ("table", ["", "CPU", "GPU"],
             [[label, nd[key]["cpu"], nd[key]["gpu"]] for key, label in (
                 ("construction", "construction"), ("forward_5_repeats", "forward, 5 repeats"),
                 ("train_5_steps", "5 training steps"))]),
            ("p", f"The note says \"{nd['claim']}\"; its own figures give {cpu_f:g} / {gpu_f:g} "
                  f"≈ {cpu_f / gpu_f:.0f}×, under 3 orders of magnitude. It does not say "
                  "whether its forward figure is per repeat or for all five."),
            *[("img", f, "Seconds per phase and provider (log scale); black markers: note 4's "
                         "PyTorch figures at B = 8, T = 1024") for f in figs]]


# 9 -------------------------------------------------------------------------------------------

def _lr_sentence(row: dict) -> str:
    v = row["variants"]
    n = row["seeds"]
    div = {k: sum(x["diverged"]) for k, x in v.items()}
    parts = [f"lr {row['lr']:g}: LayerNorm's mean held-out loss lower than without in "
             f"{row['faster_seeds']}/{n} seeds, its oscillation lower in "
             f"{row['calmer_seeds']}/{n}"
             + (f" (equal in {row['equal_oscillation_seeds']})"
                if row["equal_oscillation_seeds"] else "")]
    if any(div.values()):
        parts.append("diverged: " + ", ".join(f"{convergence.VARIANTS[k]} {d}/{n}"
                                              for k, d in div.items() if d))
    verdict = {"yes": "the note's claim held", "no": "the note's claim did not hold",
               "partly": "the note's claim held only in part"}[row["held"]]
    return "; ".join(parts) + f" — {verdict}."


def _cell(values) -> str:
    finite = [x for x in values if math.isfinite(x)]
    text = span(finite, 3) if finite else "–"
    lost = len(values) - len(finite)
    return text + (f" ({lost} inf)" if lost else "")


def convergence_section(r: dict, figs: list[str]) -> list[tuple]:
    s, m = r["settings"], r["model"]
    rows = []
    for row in r["summary"]:
        for k, label in convergence.VARIANTS.items():
            v = row["variants"][k]
            rows.append([f"{row['lr']:g}", label, _cell(v["mean_eval_loss"]),
                         _cell(v["final_eval_loss"]), _cell(v["oscillation"]),
                         f"{sum(v['diverged'])}/{len(v['diverged'])}"])
    held = [row["lr"] for row in r["summary"] if row["held"] == "yes"]
    lost = [row["lr"] for row in r["summary"] if any(row["variants"]["none"]["diverged"])]
    ln_lost = [row["lr"] for row in r["summary"]
               if any(row["variants"]["layernorm"]["diverged"])]
    fmt = lambda lrs: ", ".join(f"{x:g}" for x in lrs) or "none"
    pairs = [(a, b) for row in r["summary"]
             for a, b in zip(row["variants"]["frozen"]["mean_eval_loss"],
                             row["variants"]["layernorm"]["mean_eval_loss"])]
    gap = max(abs(a - b) / b for a, b in pairs)
    frozen_lost = sum(sum(row["variants"]["frozen"]["diverged"]) for row in r["summary"])
    frozen = (f"With γ/β frozen at 1/0, the mean held-out loss differed from trained "
              f"LayerNorm's by at most {100 * gap:.1f}% at any learning rate and seed, and "
              f"{frozen_lost} of {len(pairs)} such runs diverged"
              + (": in these short runs what LayerNorm changed came from the normalisation "
                 "itself rather than from learning γ and β." if gap < 0.05 and not frozen_lost
                 else "."))
    return [("h", 2, "9. LayerNorm and convergence"),
            source(1, "§4.1.4 and §7.1"),
            quoted(1, convergence.NOTE),
            ("p", "The note gives no figures for this claim, so nothing of the note's is "
                  "compared numerically here."),
            ("p", f"One model, '{m['preset']}' with {m['n_layer']} layers and C = {m['n_embd']} "
                  f"(vocabulary 256, bytes), trained three ways: "
                  + ", ".join(f"**{v}**" for v in convergence.VARIANTS.values())
                  + f"; {s['steps']} steps of B = {s['batch']}, T = {s['seq']}, AdamW "
                  "(`configure_optimizer`: betas 0.9/0.95, weight decay 0.1), constant learning "
                  f"rate, no gradient clipping; learning rates {fmt(s['lrs'])}, seeds "
                  f"{', '.join(map(str, s['seeds']))}. For one seed every variant and learning "
                  "rate starts from the same weights and sees the same batches; the held-out "
                  f"loss is measured every {s['eval_every']} steps on the same "
                  f"{convergence.EVAL_BATCHES} fixed batches of the corpus's held-out split. "
                  "Speed: the mean held-out loss over the run (lower = converged faster). "
                  "Oscillation: the mean rise of the held-out loss per interval, over the "
                  "second half of the run (0 for a curve that never goes up). Diverged: a loss "
                  "overflowed, or the held-out loss ended at or above where it started; of two "
                  "runs the one that diverged counts as the one that oscillated more. The note's "
                  "claim is checked seed by seed: LayerNorm against no LayerNorm, same seed."),
            ("list", [_lr_sentence(row) for row in r["summary"]]
             + [f"The claim held at every seed at learning rates {fmt(held)}; without "
                f"LayerNorm the model diverged at {fmt(lost)}, with LayerNorm at "
                f"{fmt(ln_lost)}.", frozen]
             + ([f"Quick run: {s['steps']} steps, {len(s['seeds'])} seed(s) and "
                 f"{len(s['lrs'])} learning rates are too few to judge; the full report trains "
                 "longer, at more learning rates and seeds."] if r["mode"] == "quick" else [])),
            ("table", ["lr", "variant", "mean held-out loss (seeds' range)",
                       "final held-out loss", "oscillation", "diverged"], rows),
            *[("img", f, "Held-out loss per step, one line per seed; below, speed and "
                         "oscillation per learning rate") for f in figs]]
