"""`nanonorm params`: GPT-2's parameter counts by component, tied vs untied, weights vs biases."""
from __future__ import annotations

HELP = "Print the parameter table of the GPT presets (exact, computed without allocating)"
COLUMNS = ("embeddings", "attention", "mlp", "layernorm", "unembedding")


def configure(parser) -> None:
    from ..gpt_config import PRESETS
    parser.add_argument("presets", nargs="*", metavar="PRESET",
                        help=f"presets to show: {', '.join(PRESETS)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def table(names) -> list[dict]:
    """One row per preset: shape, tying, every component's count, weights, biases."""
    from ..gpt_config import GPTConfig
    rows = []
    for name in names:
        cfg = GPTConfig.preset(name)
        b = cfg.parameter_breakdown()
        rows.append({"preset": name, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                     "n_embd": cfg.n_embd, "vocab_size": cfg.vocab_size, "tied": cfg.tie_weights,
                     **{c: b[c]["total"] for c in COLUMNS},
                     "weights": b["total"]["weights"], "biases": b["total"]["biases"],
                     "total": b["total"]["total"]})
    return rows


def run(args) -> int:
    import json

    from ..gpt_config import PRESETS
    names = args.presets or list(PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        from ..cli import UsageError
        raise UsageError(f"argument PRESET: unknown preset(s) {', '.join(map(repr, unknown))}; "
                         f"valid presets: {', '.join(PRESETS)}")
    rows = table(names)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ("preset", "L", "H", "C", "V", "tied", *COLUMNS, "biases", "bias %", "total")
    lines = [(r["preset"], r["n_layer"], r["n_head"], r["n_embd"], r["vocab_size"],
              "yes" if r["tied"] else "no", *(f"{r[c]:,}" for c in COLUMNS), f"{r['biases']:,}",
              f"{100 * r['biases'] / r['total']:.3f}", f"{r['total']:,}") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    for i, line in enumerate([head, *lines]):
        print("  ".join(str(x).rjust(w) if j else str(x).ljust(w)
                        for j, (x, w) in enumerate(zip(line, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("tied: lm_head is wte, so the unembedding adds no parameters; LayerNorm gains are "
          "counted as weights, its shifts as biases")
    return 0
