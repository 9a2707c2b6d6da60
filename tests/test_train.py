"""Training end to end: overfitting, exact resume, data, the train/sample/params commands."""
import math

import numpy as np
import pytest

from nanonorm import cli, data
from nanonorm.commands import train as train_cmd
from nanonorm.gpt import GPT, GPTConfig
from nanonorm.optim import clip_grad_norm

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "héllo wörld\n" * 10


def test_tiny_model_overfits_a_fixed_batch():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=256, block_size=16)
    model = GPT(cfg, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (4, 16)), rng.integers(0, 256, (4, 16))
    opt = model.configure_optimizer(lr=1e-2, weight_decay=0.0)
    first = float(model.forward(x, y)[1])
    for _ in range(60):
        _, loss = model.forward(x, y)
        grads = model.backward()
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
    assert abs(first - math.log(256)) < 0.05
    assert float(loss) < 0.5, float(loss)    # memorised: far below log(256) = 5.55


def args_for(tmp_path, *extra):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return cli.build_parser().parse_args(
        ["train", "--preset", "tiny", "--batch-size", "3", "--block-size", "12", "--lr", "3e-3",
         "--data", str(path), "--log-every", "2", "--no-progress", *extra])


def test_resume_after_interruption_reproduces_the_losses(tmp_path, capsys):
    full = train_cmd.train(args_for(tmp_path, "--steps", "6", "--out", str(tmp_path / "a"),
                                    "--checkpoint-every", "2"))
    assert len(full) == 6

    def crash(step):
        if step == 4:           # step 5 of 6 done, last checkpoint at step 4
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_cmd.train(args_for(tmp_path, "--steps", "6", "--out", str(tmp_path / "b"),
                                 "--checkpoint-every", "2"), on_step=crash)
    resumed = train_cmd.train(args_for(tmp_path, "--steps", "6", "--out", str(tmp_path / "b"),
                                       "--resume"))
    assert "resuming" in capsys.readouterr().out
    assert resumed == full[4:]          # bit-identical: same weights, moments, batches
    a, b = GPT.from_pretrained(tmp_path / "a"), GPT.from_pretrained(tmp_path / "b")
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(p, b.parameters()[name])


def test_train_then_sample_cli(tmp_path, capsys):
    out = tmp_path / "run"
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    assert cli.main(["train", "--preset", "tiny", "--steps", "4", "--batch-size", "2",
                     "--block-size", "8", "--data", str(path), "--out", str(out),
                     "--no-progress", "--log-every", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step      4/4  loss" in printed and "tok/s" in printed and "val loss" in printed
    assert {"model.safetensors", "config.json", "train_state.safetensors"} <= {
        p.name for p in out.iterdir()}
    assert cli.main(["sample", "--checkpoint", str(out), "--prompt", "the ",
                     "--max-new-tokens", "5", "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("the ") and len(text.encode()) >= 5


def test_params_cli(capsys):
    assert cli.main(["params", "gpt2", "model5"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808" in out and "163,037,184" in out and "102,144" in out and "0.082" in out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["params", "gpt5"])
    assert exit_.value.code == 2 and "valid presets: gpt2" in capsys.readouterr().err


def test_byte_tokenizer_and_batches():
    ids = data.encode("héllo\n")
    assert ids.dtype == np.uint8 and len(ids) == 7 and data.decode(ids) == "héllo\n"
    corpus = data.load_corpus(max_bytes=100_000)
    assert len(corpus) == 100_000
    np.testing.assert_array_equal(corpus, data.stdlib_corpus(100_000))   # deterministic
    x, y = data.get_batch(corpus, 5, 9, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 9) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x2, _ = data.get_batch(corpus, 5, 9, np.random.default_rng(0))
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="block_size"):
        data.get_batch(corpus[:5], 1, 9, np.random.default_rng(0))


def test_recompute_flag_trains_the_same_weights_bit_for_bit(tmp_path):
    plain = train_cmd.train(args_for(tmp_path, "--steps", "3", "--out", str(tmp_path / "a")))
    again = train_cmd.train(args_for(tmp_path, "--steps", "3", "--out", str(tmp_path / "b"),
                                     "--recompute"))
    assert again == plain
    a, b = GPT.from_pretrained(tmp_path / "a"), GPT.from_pretrained(tmp_path / "b")
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(p, b.parameters()[name])
