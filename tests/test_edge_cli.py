"""Every command refuses bad arguments as a usage error: exit status 2, one line naming the
option, no traceback, and for `train` no step run. Every option's --help gives its default."""
import subprocess
import sys
from pathlib import Path

import pytest

from nanonorm import cli
from nanonorm.checkpoint import is_checkpoint, save
from nanonorm.gpt import GPT, GPTConfig
from nanonorm.gpt_config import PRESETS

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(TEXT)
    (root / "small.txt").write_text("x" * 50)      # a training split of 45, validation of 5
    (root / "empty.txt").write_text("")
    (root / "file").write_text("not a directory")
    (root / "dir").mkdir()
    save(GPT(GPTConfig.preset("tiny"), seed=0), root / "ckpt")
    return {"root": root, "data": root / "corpus.txt", "small": root / "small.txt",
            "empty": root / "empty.txt", "file": root / "file", "dir": root / "dir",
            "ckpt": root / "ckpt", "out": root / "out"}


def expand(argv, paths):
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]


def usage_error(argv, capsys) -> str:
    """The one-line message of a usage error (exit 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


TRAIN = ["train", "--preset", "tiny", "--data", "{data}", "--block-size", "8", "--steps", "3",
         "--out", "{out}", "--no-progress"]
TRAIN_CASES = [
    (["--lr", "nan"], "--lr"), (["--lr", "inf"], "--lr"), (["--lr", "-1e-3"], "--lr"),
    (["--lr", "0"], "--lr"), (["--lr", "x"], "--lr"),
    (["--min-lr", "nan"], "--min-lr"), (["--min-lr", "-1"], "--min-lr"),
    (["--min-lr", "0.5", "--lr", "0.1"], "--min-lr"),
    (["--block-size", "-4"], "--block-size"), (["--block-size", "0"], "--block-size"),
    (["--block-size", "x"], "--block-size"), (["--block-size", "100000000"], "--block-size"),
    (["--block-size", "2000"], "--data"),                        # longer than the corpus
    (["--preset", "nope"], "--preset"),
    (["--steps", "0"], "--steps"), (["--steps", "-3"], "--steps"), (["--steps", "1.5"], "--steps"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "-2"], "--batch-size"),
    (["--warmup", "-1"], "--warmup"), (["--warmup", "4"], "--warmup"),   # more than --steps
    (["--weight-decay", "nan"], "--weight-decay"), (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--grad-clip", "0"], "--grad-clip"), (["--grad-clip", "inf"], "--grad-clip"),
    (["--seed", "-1"], "--seed"), (["--seed", "x"], "--seed"),
    (["--data", "{root}/missing.txt"], "--data"), (["--data", "{dir}"], "--data"),
    (["--data", "{empty}"], "--data"),
    (["--data", "{small}"], "--data"),                          # validation split too small
    (["--out", "{file}"], "--out"), (["--out", "{file}/sub"], "--out"),
    (["--out", "/proc/nanonorm-test-out"], "--out"),           # no one can create it, root neither
    (["--checkpoint-every", "0"], "--checkpoint-every"), (["--log-every", "0"], "--log-every"),
    (["--dtype", "float16"], "--dtype"), (["--device", "tpu"], "--device"),
    (["--resume"], "--resume"),                                 # nothing to resume in OUT
    (["--extend"], "--extend"), (["--resume", "--overwrite"], "--overwrite"),
    (["--out", "{ckpt}"], "--out"),                             # holds a checkpoint already
    (["--resume", "--out", "{ckpt}"], "--resume"),              # a model without training state
]


@pytest.mark.parametrize("extra, option", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_refuses_bad_arguments_before_the_first_step(extra, option, paths, capsys,
                                                             monkeypatch):
    def no_step(self, *args, **kwargs):
        raise AssertionError("a training step ran")
    monkeypatch.setattr(GPT, "backward", no_step)
    before = sorted(p.name for p in paths["ckpt"].iterdir())
    err = usage_error(expand(TRAIN + extra, paths), capsys)
    assert f"nanonorm train: error: argument {option}" in err, err
    assert not is_checkpoint(paths["out"])
    assert sorted(p.name for p in paths["ckpt"].iterdir()) == before     # the model is kept


SAMPLE = ["sample", "--checkpoint", "{ckpt}", "--max-new-tokens", "2"]
SAMPLE_CASES = [
    (["--top-p", "2"], "--top-p"), (["--top-p", "0"], "--top-p"), (["--top-p", "nan"], "--top-p"),
    (["--top-k", "0"], "--top-k"), (["--top-k", "x"], "--top-k"),
    (["--temperature", "-1"], "--temperature"), (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--max-new-tokens", "-1"], "--max-new-tokens"), (["--seed", "-1"], "--seed"),
    (["--num-samples", "0"], "--num-samples"),
    (["--prompt-ids", "1,x"], "--prompt-ids"), (["--prompt-ids", "1,,2"], "--prompt-ids"),
    (["--prompt-ids", ""], "--prompt-ids"), (["--prompt-ids", "-1"], "--prompt-ids"),
    (["--prompt-ids", "256"], "--prompt-ids"),                 # vocab_size is 256
    (["--prompt-ids", "1", "--prompt", "a"], "--prompt"),
    (["--prompt", ""], "--prompt"), (["--prompt", "x" * 33], "--prompt"),   # block_size is 32
    (["--prompt-ids", ",".join(["1"] * 33)], "--prompt-ids"),
    (["--checkpoint", "{root}/missing"], "--checkpoint"),
    (["--checkpoint", "{dir}"], "--checkpoint"),
    (["--dtype", "int8"], "--dtype"), (["--device", "tpu"], "--device"),
]


@pytest.mark.parametrize("extra, option", SAMPLE_CASES,
                         ids=[" ".join(c[0])[:40] for c in SAMPLE_CASES])
def test_sample_refuses_bad_arguments(extra, option, paths, capsys):
    err = usage_error(expand(SAMPLE + extra, paths), capsys)
    assert f"nanonorm sample: error: argument {option}" in err, err


OTHER_CASES = [
    ([], "COMMAND"), (["nope"], "COMMAND"), (["params", "nope"], "PRESET"),
    (["params", "gpt2", "--bogus"], "--bogus"), (["info", "--bogus"], "--bogus"),
    (["report", "--seed", "x"], "--seed"), (["bench", "--providers", "nope"], "--providers"),
    (["bench", "--repeats", "x"], "--repeats"),
]


@pytest.mark.parametrize("argv, option", OTHER_CASES, ids=[" ".join(c[0]) for c in OTHER_CASES])
def test_every_command_refuses_in_one_line(argv, option, capsys):
    assert option in usage_error(argv, capsys)


def test_good_arguments_still_run(paths, capsys):
    assert cli.main(expand(SAMPLE + ["--prompt-ids", "1,2", "--temperature", "0"], paths)) == 0
    assert capsys.readouterr().out.startswith("1,2,")
    assert cli.main(expand(SAMPLE + ["--prompt", "x" * 32, "--seed", "3", "--top-k", "5",
                                     "--top-p", "0.9"], paths)) == 0


def help_blocks(command: str) -> dict[str, str]:
    """option -> its lines in `nanonorm COMMAND --help`."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    blocks, current = {}, None
    for line in sub.format_help().splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif current and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_option_help_gives_its_default(command):
    blocks = help_blocks(command)
    assert len(blocks) > 1
    missing = [opt for opt, text in blocks.items()
               if opt != "-h" and "default" not in text and "required" not in text]
    assert not missing, missing


@pytest.mark.parametrize("command", ["train", "params"])
def test_help_lists_the_presets(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    text = " ".join(sub.format_help().split())
    assert all(name in text for name in PRESETS), text


@pytest.mark.parametrize("argv, option", [
    (["train", "--lr", "nan"], "--lr"),
    (["sample", "--checkpoint", ".", "--top-p", "2"], "--top-p"),
])
def test_a_real_process_exits_2_in_one_line(argv, option, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nanonorm", *argv], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and option in proc.stderr, proc.stderr
    assert "step" not in proc.stdout


@pytest.mark.parametrize("command", [["nanonorm", "info"], ["nanonorm", "params"],
                                     ["bench", "--quick", "--only", "gelu_fwd",
                                      "--providers", "reference", "--no-progress"]])
def test_a_reader_that_leaves_early_gets_no_traceback(command, tmp_path):
    # `nanonorm info | head -0`: the pipe is closed before the command prints
    if command[0] == "bench":
        command += ["--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")]
    proc = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err          # 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in err and "BrokenPipe" not in err, err
