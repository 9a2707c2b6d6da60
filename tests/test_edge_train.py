"""`nanonorm train` never loses work: an existing run is kept, a resumed run keeps its settings
and its schedule, a diverging run saves nothing, and a run killed at any moment (SIGKILL) or
stopped with SIGINT / SIGTERM resumes bit-identically, whatever the thread count."""
import os
import random
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from nanonorm import cli
from nanonorm.checkpoint import is_checkpoint, read_checkpoint, read_train_state

TEXT = "the quick brown fox jumps over the lazy dog. " * 60 + "héllo wörld\n" * 20
THREAD_VARS = ("NANONORM_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TEXT)
    return path


def argv(corpus, out, *extra):
    return ["train", "--preset", "tiny", "--data", str(corpus), "--block-size", "16",
            "--batch-size", "4", "--lr", "3e-3", "--log-every", "1", "--checkpoint-every", "3",
            "--no-progress", "--out", str(out), *extra]


def files(out) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def exit_code(args) -> int:
    try:
        return cli.main(args)
    except SystemExit as e:
        return e.code


def state(out):
    """Everything a checkpoint holds that a resumed run depends on, as comparable values."""
    _, weights = read_checkpoint(out)
    tensors, meta = read_train_state(out)
    return weights, tensors, {k: meta[k] for k in ("step", "stop", "rng", "optim", "settings")}


def assert_same_state(a, b) -> None:
    (wa, ta, ma), (wb, tb, mb) = a, b
    assert ma == mb
    for x, y in ((wa, wb), (ta, tb)):
        assert x.keys() == y.keys()
        for name in x:
            differ = int(np.count_nonzero(x[name] != y[name]))
            assert differ == 0, f"{name}: {differ} of {x[name].size} elements differ"


def test_an_existing_run_is_kept_without_overwrite(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(argv(corpus, out, "--steps", "3")) == 0
    before = files(out)
    assert exit_code(argv(corpus, out, "--steps", "3", "--seed", "1")) == 2
    assert "--resume" in capsys.readouterr().err and files(out) == before
    assert cli.main(argv(corpus, out, "--steps", "3", "--seed", "1", "--overwrite")) == 0
    after = files(out)
    assert after["model.safetensors"] != before["model.safetensors"]
    assert json_settings(out)["seed"] == 1


def json_settings(out) -> dict:
    import json
    return json.loads(read_train_state(out)[1]["settings"])


@pytest.mark.parametrize("extra, option", [
    (["--lr", "1e-2"], "--lr"), (["--preset", "mini"], "--preset"),
    (["--batch-size", "5"], "--batch-size"), (["--block-size", "12"], "--block-size"),
    (["--seed", "4"], "--seed"), (["--min-lr", "0"], "--min-lr"), (["--warmup", "2"], "--warmup"),
    (["--weight-decay", "0"], "--weight-decay"), (["--dtype", "float64"], "--dtype"),
    (["--data", "{other}"], "--data"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_resume_refuses_settings_that_conflict_with_the_saved_run(extra, option, corpus,
                                                                  tmp_path, capsys):
    out, other = tmp_path / "run", tmp_path / "other.txt"
    other.write_text(TEXT.upper())
    assert cli.main(argv(corpus, out, "--steps", "3")) == 0
    before = files(out)
    extra = [e.format(other=other) for e in extra]
    assert exit_code(argv(corpus, out, "--steps", "3", "--resume", *extra)) == 2
    err = capsys.readouterr().err
    assert option in err and len(err.strip().splitlines()) == 1, err
    assert files(out) == before


def lrs(printed: str) -> list[float]:
    return [float(v) for v in re.findall(r"lr (\S+)  grad", printed)]


def test_the_schedule_is_fixed_when_the_run_starts(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(argv(corpus, out, "--steps", "4", "--warmup", "0")) == 0
    capsys.readouterr()
    assert exit_code(argv(corpus, out, "--steps", "6", "--resume")) == 2     # past its end
    assert "--extend" in capsys.readouterr().err
    assert cli.main(argv(corpus, out, "--steps", "3", "--resume")) == 0      # already past 3
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(argv(corpus, out, "--steps", "6", "--resume", "--extend")) == 0
    assert lrs(capsys.readouterr().out) == [3e-4, 3e-4]      # the extra steps run at min_lr
    assert read_train_state(out)[1]["step"] == "6"
    assert cli.main(argv(corpus, out, "--resume")) == 0      # the stop (6) is kept too
    assert "already at step 6 of 6" in capsys.readouterr().out


def test_resume_says_plainly_when_the_numerics_changed(corpus, tmp_path, capsys, monkeypatch):
    from nanonorm.commands import train_setup
    out = tmp_path / "run"
    assert cli.main(argv(corpus, out, "--steps", "3")) == 0
    assert cli.main(argv(corpus, out, "--steps", "3", "--resume")) == 0
    assert "warning" not in capsys.readouterr().err            # same code: nothing to say
    real = train_setup.numerics_of
    upgraded = lambda model: {**real(model), "source": "0" * 16, "cpu": "another cpu"}
    monkeypatch.setattr(train_setup, "numerics_of", upgraded)  # as after an upgrade or a move
    assert cli.main(argv(corpus, out, "--steps", "4", "--resume", "--extend")) == 0
    err = capsys.readouterr().err
    assert "source, cpu changed" in err and "not bit-identically" in err, err


def test_a_diverging_run_stops_and_keeps_the_last_finite_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    code = exit_code(argv(corpus, out, "--steps", "10", "--warmup", "0", "--lr", "1e30",
                          "--checkpoint-every", "1"))
    err = capsys.readouterr().err
    assert code == 1 and "diverged at step 2" in err and "checkpoint of step 1" in err, err
    assert read_train_state(out)[1]["step"] == "1"
    _, weights = read_checkpoint(out)
    assert all(np.isfinite(w).all() for w in weights.values())


# real processes: SIGKILL, SIGINT, SIGTERM ---------------------------------------------------

# a run's processes may each compile a kernel afresh or load it from Numba's on-disk cache
# (the first run after an install or an edit compiles; later ones load): both must give the
# same bits, or a resumed run differs from an uninterrupted one. Every kernel, forward and
# backward, both dtypes, awkward sizes (tails of the 32-element lane sums, one-element rows)
SAME_BITS_SCRIPT = """
import hashlib, numpy as np
from nanonorm.kernels.cpu import KERNELS as K, adamw, attention, gelu, layernorm, loss, softmax
rng = np.random.default_rng(0)
out, modules = [], (adamw, attention, gelu, layernorm, loss, softmax)
for dt in (np.float32, np.float64):
    r = lambda *shape: rng.standard_normal(shape).astype(dt)
    for c in (1, 45, 64, 777):
        x, dy, w, b = r(37, c), r(37, c), r(c), r(c)
        y, cache = K["layer_norm_forward"](x, (c,), w, b)
        out += [y, *K["layer_norm_backward"](dy, cache)]
        for op in ("softmax", "log_softmax"):
            for temperature in (1.0, 0.3, 7.0):
                y, cache = K[op + "_forward"](x, -1, temperature)
                out += [y, K[op + "_backward"](dy, cache)]
        loss_, cache = K["cross_entropy_forward"](x, rng.integers(0, c, 37))
        out += [np.asarray(loss_), K["cross_entropy_backward"](1.0, cache)]
        y, cache = K["gelu_forward"](x)
        out += [y, K["gelu_backward"](dy, cache)]
    q, k, v = r(2, 3, 70, 16), r(2, 3, 90, 16), r(2, 3, 90, 24)
    for causal in (False, True):
        o, cache = K["scaled_dot_product_attention_forward"](q, k, v, causal=causal)
        out += [o, *K["scaled_dot_product_attention_backward"](r(2, 3, 70, 24), cache)]
    p, g, m, v2 = r(1000), r(1000), r(1000), np.abs(r(1000))
    adamw.adamw_step(p, g, m, v2, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                     weight_decay=0.1, step=3)
    out += [p, m, v2]
kernels = [f for mod in modules for f in vars(mod).values() if hasattr(f, "stats")]
compiled = sum(len(f.signatures) for f in kernels)
hits = sum(f.stats.cache_hits.total() for f in kernels)
misses = sum(f.stats.cache_misses.total() for f in kernels)
print(compiled, hits, misses, hashlib.sha256(b"".join(a.tobytes() for a in out)).hexdigest())
"""


def test_every_kernel_compiled_afresh_and_loaded_from_the_cache_gives_the_same_bits(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))   # empty: compiles
    runs = [subprocess.run([sys.executable, "-c", SAME_BITS_SCRIPT], env=env, text=True,
                           capture_output=True, timeout=600) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    (compiled, hits0, misses0, fresh), (compiled1, hits1, misses1, cached) = (
        r.stdout.split() for r in runs)
    # the premise: the first process compiled everything, the second loaded everything
    assert int(compiled) > 10 and compiled1 == compiled
    assert (hits0, misses0) == ("0", compiled) and (hits1, misses1) == (compiled, "0")
    assert fresh == cached
    one_thread = subprocess.run([sys.executable, "-c", SAME_BITS_SCRIPT], text=True,
                                env=dict(env, **{k: "1" for k in THREAD_VARS}),
                                capture_output=True, timeout=600)
    assert one_thread.returncode == 0, one_thread.stderr[-2000:]
    assert one_thread.stdout.split()[-1] == fresh            # and on one thread instead of two


STEPS = "40"


def start(corpus, out, threads: int):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{k: str(threads) for k in THREAD_VARS})
    args = argv(corpus, out, "--steps", STEPS) + (["--resume"] if is_checkpoint(out) else [])
    return subprocess.Popen([sys.executable, "-m", "nanonorm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_a_step(proc) -> bool:
    """True once the process has printed a step; False if it ended without one (a resumed
    run that had nothing left to do)."""
    return any(line.startswith("step") for line in proc.stdout)


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = start(corpus, out, threads=1)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return state(out)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(corpus, tmp_path,
                                                                uninterrupted):
    seed = random.SystemRandom().randrange(2**32)
    rng, out, runs = random.Random(seed), tmp_path / "run", []
    for kill in range(4):                     # 3 kills at random moments, then to the end
        threads = 2 if kill % 2 == 0 else 1   # killed on 2 threads, resumed on 1, ...
        proc = start(corpus, out, threads)
        if kill < 3 and wait_for_a_step(proc):
            try:
                proc.wait(timeout=rng.uniform(0.0, 0.3))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        runs.append((threads, proc.returncode))
        assert proc.returncode in ((0, -signal.SIGKILL) if kill < 3 else (0,)), err[-2000:]
    assert_same_state(state(out), uninterrupted), f"seed {seed}, runs {runs}"


@pytest.mark.parametrize("sig, threads", [(signal.SIGINT, 2), (signal.SIGTERM, 1)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_last_step_and_resuming_is_bit_identical(sig, threads, corpus,
                                                                    tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc = start(corpus, out, threads)
    assert wait_for_a_step(proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-2000:]
    stopped = re.search(r"stopped after step (\d+) of 40; its checkpoint is in (\S+)/", err)
    assert stopped and stopped.group(2) == str(out), err
    assert read_train_state(out)[1]["step"] == stopped.group(1)
    proc = start(corpus, out, 3 - threads)             # resumed on the other thread count
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert_same_state(state(out), uninterrupted)
