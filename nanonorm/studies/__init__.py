"""The source documents' experiments: functions that return each study's numbers as plain
dicts and lists, and separate functions that draw them (matplotlib Figure objects, no pyplot).

    instability         1. repeated products vanish or explode; LayerNorm keeps them bounded
    layernorm_stats     2. statistics before/after LayerNorm by scope; 3. γ and β
    attention_scaling   4. std(QKᵀ) grows as sqrt(d); 5. softmax before/after scaling
    ln_params           6. LayerNorm γ and β of a GPT-2 model
    param_counts        7. parameter counts, weights vs biases, weight tying
    timing              8. construction, forward and training time per device/implementation
    sections            the report's prose, computed from each study's numbers
    document            report blocks rendered to Markdown and HTML
    report              runs them all and writes the report (`nanonorm report`)
"""
