"""`nanonorm sample`: continue a prompt with a trained or downloaded GPT checkpoint."""
from __future__ import annotations

from ..cli import UsageError

HELP = "Generate text from a checkpoint directory (ours, save_pretrained's, or a HF cache dir)"


def configure(parser) -> None:
    from ..cli import finite_float, int_at_least

    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="directory with config.json and model.safetensors (e.g. the OUT "
                             "of `nanonorm train`, or a Hugging Face cache dir); required")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    prompt.add_argument("--prompt-ids", type=_token_ids, default=None, metavar="IDS",
                        help="comma-separated token ids instead of --prompt, e.g. 464,3290")
    parser.add_argument("--max-new-tokens", type=int_at_least(0), default=200, metavar="N",
                        help="tokens to generate after the prompt")
    parser.add_argument("--temperature", default=0.8,
                        type=finite_float(0.0, name="a finite number >= 0"), help="0 = greedy")
    parser.add_argument("--top-k", type=int_at_least(1), default=None, metavar="K",
                        help="sample among the K most likely tokens only (default: all)")
    parser.add_argument("--top-p", default=None, metavar="P",
                        type=finite_float(0.0, above=True, high=1.0, name="a number in (0, 1]"),
                        help="sample among the most likely tokens holding mass P only "
                             "(default: all)")
    parser.add_argument("--seed", type=int_at_least(0), default=None,
                        help="sampling seed (default: fresh randomness each run)")
    parser.add_argument("--num-samples", type=int_at_least(1), default=1, metavar="N",
                        help="independent continuations of the prompt")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="computation dtype")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda: CuPy arrays")


def _token_ids(text: str) -> list[int]:
    """An argparse type: "464,3290" -> [464, 3290]."""
    import argparse
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() and t.isascii() for t in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative token ids, "
                                         f"got {text[:80]!r}")
    return [int(t) for t in parts]


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
        raise UsageError(f"argument --prompt: vocab_size {model.config.vocab_size} needs "
                         f"GPT-2's tokenizer (transformers + tokenizer files in the checkpoint "
                         f"dir); give --prompt-ids instead ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None
    return (lambda text: tok.encode(text)), (lambda ids: tok.decode([int(i) for i in ids]))


def run(args) -> int:
    import numpy as np

    from ..backend import to_numpy
    from ..gpt import GPT

    try:
        model = GPT.from_pretrained(args.checkpoint, dtype=args.dtype, device=args.device)
    except RuntimeError as e:               # device="cuda" without CuPy or a GPU
        raise UsageError(f"argument --device: {e}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"argument --checkpoint: {e}") from None
    if args.prompt_ids is not None:
        option, ids = "--prompt-ids", args.prompt_ids
        decode = lambda ids: ",".join(str(int(i)) for i in ids)
        if max(ids) >= model.config.vocab_size:
            raise UsageError(f"argument --prompt-ids: id {max(ids)} is not below the model's "
                             f"vocab_size {model.config.vocab_size}")
    else:
        encode, decode = _tokenizer(model, args.checkpoint)
        option, ids = "--prompt", list(encode(args.prompt))
        if not ids:
            raise UsageError("argument --prompt: the prompt is empty")
    if len(ids) > model.config.block_size:
        raise UsageError(f"argument {option}: {len(ids):,} tokens, more than the model's "
                         f"block_size {model.config.block_size:,}")
    prompt = np.asarray([ids] * args.num_samples, dtype=np.int64)        # (B, T)
    out = to_numpy(model.generate(prompt, args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, seed=args.seed))
    for i, row in enumerate(out):
        if args.num_samples > 1:
            print(f"--- sample {i}")
        print(decode(row))
    return 0
