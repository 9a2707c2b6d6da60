"""`nanonorm sample`: continue a prompt with a trained or downloaded GPT checkpoint."""
from __future__ import annotations

HELP = "Generate text from a checkpoint directory (ours, save_pretrained's, or a HF cache dir)"


def configure(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="directory with config.json and "
                        "model.safetensors (e.g. the OUT of `nanonorm train`)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--prompt-ids", default=None,
                        help="comma-separated token ids instead of --prompt")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))


def _tokenizer(model, checkpoint: str):
    """(encode, decode): bytes for vocab-256 models, else GPT-2's BPE from transformers if the
    checkpoint directory holds its tokenizer files."""
    from .. import data
    if model.config.vocab_size == data.VOCAB_SIZE:
        return (lambda text: data.encode(text).astype("int64")), data.decode
    try:
        from transformers import GPT2TokenizerFast
        from ..checkpoint import resolve_dir
        tok = GPT2TokenizerFast.from_pretrained(str(resolve_dir(checkpoint)), local_files_only=True)
    except Exception as e:   # no transformers, or no tokenizer files beside the weights
        raise SystemExit(f"vocab_size {model.config.vocab_size} needs GPT-2's tokenizer "
                         f"(transformers + tokenizer files in the checkpoint dir) or "
                         f"--prompt-ids and id output: {e}") from None
    return (lambda text: tok.encode(text)), (lambda ids: tok.decode([int(i) for i in ids]))


def run(args) -> int:
    import numpy as np

    from ..backend import to_numpy
    from ..gpt import GPT

    model = GPT.from_pretrained(args.checkpoint, dtype=args.dtype, device=args.device)
    if args.prompt_ids is not None:
        ids = [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        encode, decode = None, (lambda ids: ",".join(str(int(i)) for i in ids))
    else:
        encode, decode = _tokenizer(model, args.checkpoint)
        ids = list(encode(args.prompt))
    if not ids:
        raise SystemExit("the prompt is empty")
    prompt = np.asarray([ids] * args.num_samples, dtype=np.int64)        # (B, T)
    out = to_numpy(model.generate(prompt, args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed))
    for i, row in enumerate(out):
        if args.num_samples > 1:
            print(f"--- sample {i}")
        print(decode(row))
    return 0
