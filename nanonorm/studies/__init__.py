"""The source notes' experiments: functions that return each study's numbers as plain dicts and
lists, and separate functions that draw them (matplotlib Figure objects, no pyplot).

    instability         1. repeated products vanish or explode; LayerNorm keeps them bounded
    layernorm_stats     2. statistics after LayerNorm over each dim; 3. γ and β
    attention_scaling   4. std(QKᵀ) grows as sqrt(d); 5. softmax before/after scaling
    ln_params           6. LayerNorm γ and β of a GPT-2 model (trained here without one)
    param_counts        7. parameter counts, weights vs biases, weight tying (tied vs untied)
    timing              8. Model 5's construction, forward and training time per device
    convergence         9. training with, with frozen, and without LayerNorm
    norm_variants       GPT-2's loss and gradients without its LayerNorms (study 9)
    training            the short trainings of studies 6, 7 and 9
    load                how much of the machine other processes take while timing
    sources             the four notes, cited by title
    sections, sections_gpt  the report's prose, computed from each study's numbers
    document            report blocks rendered to Markdown and HTML
    report              runs them all and writes the report (`nanonorm report`)
"""

# how long a run took on a 2-core CPU (each report states its own run's duration); kept here,
# light to import, for `nanonorm report --help`
DURATION = {"quick": "about 12 s", "full": "about 5 minutes (12 with other work running)"}
