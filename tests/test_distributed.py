"""Data-parallel training: gradient accumulation, MPI ranks (2 on the CI machine, through the
mpich wheel's mpiexec), ZeRO-1, resume with another split, a failing rank; scaling out changes
nothing but the speed."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nanonorm import cli
from nanonorm.commands import train as train_cmd
from nanonorm.gpt import GPT

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "héllo wörld\n" * 10
MPIEXEC = Path(sys.executable).parent / "mpiexec"
needs_mpi = pytest.mark.skipif(
    not MPIEXEC.exists() or __import__("importlib").util.find_spec("mpi4py") is None,
    reason="no MPI here: pip install \".[dist]\" (mpi4py and the mpich wheel)")


def options(tmp_path, out, *extra, steps=4):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    return ["train", "--preset", "tiny", "--block-size", "8", "--lr", "3e-3", "--dtype",
            "float64", "--data", str(corpus), "--steps", str(steps), "--log-every", "1",
            "--no-progress", "--out", str(tmp_path / out), *extra]


def weights(path) -> dict:
    return {n: np.asarray(p) for n, p in GPT.from_pretrained(path, dtype="float64")
            .parameters().items()}


def assert_same_run(a, b, rtol=1e-10):
    wa, wb = weights(a), weights(b)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=rtol, atol=1e-13, err_msg=name)


def logged_losses(text: str) -> list[str]:
    return [line.split("loss")[1].split()[0] for line in text.splitlines()
            if line.startswith("step ") and " loss " in line]


def mpi_script(path: Path, text: str, *args) -> subprocess.CompletedProcess:
    """`text` written to `path` and run on 2 ranks under mpiexec, with `args`."""
    path.write_text(text)
    return subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(path), *args],
                          capture_output=True, text=True, timeout=120)


def mpi_train(tmp_path, out, *extra, steps=4, nproc=2, timeout=240):
    """`nanonorm train --nproc N ...` in a subprocess; its output."""
    cmd = [sys.executable, "-m", "nanonorm", *options(tmp_path, out, *extra, steps=steps),
           "--nproc", str(nproc)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_gradient_accumulation_is_the_bigger_batch(tmp_path, capsys):
    # in one process: 2 micro-batches of 2 sequences make the step of one batch of 4
    one = train_cmd.train(cli.build_parser().parse_args(
        options(tmp_path, "a", "--batch-size", "4")))
    two = train_cmd.train(cli.build_parser().parse_args(
        options(tmp_path, "b", "--batch-size", "2", "--grad-accum", "2")))
    np.testing.assert_allclose(two, one, rtol=1e-12)
    assert_same_run(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()


def test_a_run_without_accumulation_is_the_single_process_step_bit_for_bit(tmp_path):
    # K = N = 1 takes exactly the path it took before data parallelism: backward(1.0), the
    # batch drawn as before; the checkpoint's settings record the split
    args = cli.build_parser().parse_args(options(tmp_path, "a", "--batch-size", "3",
                                                 "--dtype", "float32"))
    losses = train_cmd.train(args)
    model = GPT(__import__("nanonorm").GPTConfig.preset("tiny", block_size=8), seed=0)
    opt = model.configure_optimizer(lr=3e-3, weight_decay=0.1)
    from nanonorm.data import get_batch, load_corpus, split
    from nanonorm.optim import clip_grad_norm, cosine_lr
    data = split(load_corpus(str(tmp_path / "corpus.txt")))[0]
    rng = np.random.default_rng(0)
    mine = []
    for step in range(4):
        x, y = get_batch(data, 3, 8, rng)
        opt.lr = cosine_lr(step, max_lr=3e-3, warmup=0, total=4, min_lr=3e-4)
        _, loss = model.forward(x, y)
        grads = model.backward()
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        mine.append(float(loss))
    assert losses == mine


@needs_mpi
def test_four_splits_of_one_global_batch_are_one_run(tmp_path, capsys):
    # --batch-size 4 | 2 x grad-accum 2 | 2 x 2 ranks | 1 x grad-accum 2 x 2 ranks
    train_cmd.train(cli.build_parser().parse_args(options(tmp_path, "a", "--batch-size", "4")))
    base = logged_losses(capsys.readouterr().out)
    assert len(base) == 4
    train_cmd.train(cli.build_parser().parse_args(
        options(tmp_path, "b", "--batch-size", "2", "--grad-accum", "2")))
    assert logged_losses(capsys.readouterr().out) == base
    for out, extra in (("c", ("--batch-size", "2")),
                       ("d", ("--batch-size", "1", "--grad-accum", "2")),
                       ("e", ("--batch-size", "1", "--grad-accum", "2", "--overlap-comm"))):
        printed = mpi_train(tmp_path, out, *extra)
        assert logged_losses(printed) == base, printed
        assert printed.count("val loss") == 1          # one rank logs
    for out in "bcde":
        assert_same_run(tmp_path / "a", tmp_path / out)


@needs_mpi
def test_zero1_is_the_unsharded_run(tmp_path):
    mpi_train(tmp_path, "plain", "--batch-size", "2")
    mpi_train(tmp_path, "zero", "--batch-size", "2", "--zero", "1")
    assert_same_run(tmp_path / "plain", tmp_path / "zero", rtol=1e-12)
    # the checkpoint holds the whole moments, as a single process writes them
    from nanonorm.checkpoint import read_train_state
    plain, _ = read_train_state(tmp_path / "plain")
    zero, _ = read_train_state(tmp_path / "zero")
    assert plain.keys() == zero.keys()
    for key in plain:
        np.testing.assert_allclose(zero[key], plain[key], rtol=1e-9, atol=1e-15, err_msg=key)


@needs_mpi
def test_resume_on_another_number_of_processes_continues_the_run(tmp_path, capsys):
    full = train_cmd.train(cli.build_parser().parse_args(
        options(tmp_path, "a", "--batch-size", "4", "--checkpoint-every", "2")))

    def crash(step):
        if step == 2:                       # step 3 done, last checkpoint at step 2
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_cmd.train(cli.build_parser().parse_args(
            options(tmp_path, "b", "--batch-size", "4", "--checkpoint-every", "2")),
            on_step=crash)
    capsys.readouterr()
    printed = mpi_train(tmp_path, "b", "--resume", "--batch-size", "2", "--zero", "1")
    assert "resuming" in printed
    assert logged_losses(printed) == [f"{loss:.4f}" for loss in full[2:]]   # as logged
    assert_same_run(tmp_path / "a", tmp_path / "b")


@needs_mpi
def test_a_split_that_changes_the_global_batch_is_refused(tmp_path):
    train_cmd.train(cli.build_parser().parse_args(
        options(tmp_path, "a", "--batch-size", "4", steps=2)))
    cmd = [sys.executable, "-m", "nanonorm", *options(tmp_path, "a", "--resume", steps=2),
           "--nproc", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "global batch is 4 sequences" in proc.stderr


@needs_mpi
def test_a_killed_rank_ends_the_job_promptly(tmp_path):
    proc, ranks = _training_job(tmp_path, "k")
    try:
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - killed < 30
        assert proc.returncode != 0
        assert "processes failed or was killed" in err
    finally:
        if proc.poll() is None:
            proc.kill()


@needs_mpi
def test_sigint_stops_every_rank_after_the_same_step_with_one_checkpoint(tmp_path):
    proc, _ = _training_job(tmp_path, "s")
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert err.count("SIGINT received: stopped after step") == 1, err   # said by rank 0
    assert (tmp_path / "s" / "train_state.safetensors").exists()


def _training_job(tmp_path, out):
    """`nanonorm train --nproc 2` on a long schedule, a few seconds into training: the
    launcher's Popen and its two ranks' pids."""
    cmd = [sys.executable, "-m", "nanonorm", *options(tmp_path, out, "--batch-size", "2",
                                                       steps=100000), "--nproc", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, ranks = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(ranks) < 2:
        time.sleep(0.5)
        ranks = _ranks_of(proc.pid)
    if len(ranks) < 2:
        proc.kill()
        proc.communicate()
    assert len(ranks) == 2, "the two ranks did not start"
    time.sleep(3)                               # well into training
    return proc, ranks


def _ranks_of(launcher_pid: int) -> list[int]:
    """The pids of `python -m nanonorm train` processes below the launcher (mpiexec's ranks)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    children, found = {}, []
    for line in out.splitlines()[1:]:
        pid, ppid, *rest = line.split(None, 2)
        children.setdefault(int(ppid), []).append((int(pid), rest[0] if rest else ""))
    todo = [launcher_pid]
    while todo:
        for pid, args in children.get(todo.pop(), []):
            todo.append(pid)
            if "nanonorm" in args and "mpiexec" not in args and pid != launcher_pid:
                found.append(pid)
    return sorted(found)


@needs_mpi
def test_the_python_api_example_runs_under_mpiexec_and_a_raising_rank_ends_the_job(tmp_path):
    import nanonorm.distributed as dist
    script = "\n".join(line[4:] for line in dist.__doc__.splitlines()   # the docstring's
                       if line.startswith("    "))                      # example, as written
    script = script.replace("my_batch(step, group.rank)", "batch(step, group.rank)")
    body = (
        "import numpy as np, json, sys\n"
        "def batch(step, rank):\n"
        "    rng = np.random.default_rng([step, rank])\n"
        "    return rng.integers(0, 256, (2, 8)), rng.integers(0, 256, (2, 8))\n"
        + script +
        "\nw = model.parameters()['transformer.wte.weight']\n"
        "print(json.dumps([group.rank, group.size, float(w.sum())]))\n"
        "if len(sys.argv) > 1 and group.rank == 1:\n"
        "    raise RuntimeError('rank 1 fails')\n"
        "group.barrier()\n")
    proc = mpi_script(tmp_path / "ddp.py", body)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(r) for r in re.findall(r"\[[^\]]*\]", proc.stdout)]  # lines may mix
    assert sorted(r[:2] for r in rows) == [[0, 2], [1, 2]]
    assert rows[0][2] == rows[1][2]                     # the same weights, bit for bit
    t0 = time.monotonic()
    proc = mpi_script(tmp_path / "ddp.py", body, "fail")
    assert proc.returncode != 0 and time.monotonic() - t0 < 60
    assert "rank 1 fails" in proc.stderr and "rank 1 of 2 failed" in proc.stderr


@needs_mpi
def test_nccl_sums_cupy_arrays_across_two_gpus(tmp_path):
    cupy = pytest.importorskip("cupy", reason="no CuPy here: the NCCL path needs GPUs")
    try:
        gpus = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        gpus = 0
    if gpus < 2:
        pytest.skip(f"{gpus} GPU(s) here: NCCL between two ranks needs two")
    proc = mpi_script(
        tmp_path / "nccl.py",
        "import cupy, json\n"
        "from nanonorm import distributed as dist\n"
        "group = dist.init(); dist.use_gpus(group)\n"
        "buf = cupy.arange(5, dtype=cupy.float32) * (group.rank + 1)\n"
        "group.sum_flat(buf)\n"
        "print(json.dumps(cupy.asnumpy(buf).tolist()))\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(r) for r in re.findall(r"\[[^\]]*\]", proc.stdout)] == \
        [[0, 3, 6, 9, 12]] * 2


def test_backward_hands_over_every_gradient_once_as_it_becomes_final():
    from nanonorm.gpt import GPTConfig
    model = GPT(GPTConfig(n_layer=3, n_head=2, n_embd=8, vocab_size=13, block_size=7))
    rng = np.random.default_rng(0)
    idx, tgt = rng.integers(0, 13, (2, 5)), rng.integers(0, 13, (2, 5))
    model.forward(idx, tgt, return_logits=False)
    seen = []

    def on_ready(g, names):
        assert all(n in g for n in names)   # final when handed over: copy them now
        seen.append((list(names), {n: np.array(g[n]) for n in names}))
    grads = model.backward(on_ready=on_ready)
    order = [n for names, _ in seen for n in names]
    assert sorted(order) == sorted(grads) and len(order) == len(set(order))
    assert seen[0][0] == ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    assert all(n.startswith("transformer.h.2.") for n in seen[1][0])      # the last block next
    for _, copies in seen:                  # nothing changed after it was handed over
        for n, a in copies.items():
            np.testing.assert_array_equal(grads[n], a)
    model.forward(idx, tgt)
    with pytest.raises(TypeError, match="on_ready"):
        model.backward(on_ready="later")


@needs_mpi
def test_gradients_sent_during_the_backward_equal_the_blocking_average(tmp_path):
    proc = mpi_script(
        tmp_path / "reducer.py",
        "import numpy as np\n"
        "from nanonorm import distributed as dist\n"
        "group = dist.init()\n"
        "shapes = {f'p{i}': (3, 1000 * (i + 1)) for i in range(6)}   # one bucket each\n"
        "grads = {n: np.random.default_rng([group.rank, i]).standard_normal(s).astype("
        "np.float32) for i, (n, s) in enumerate(shapes.items())}\n"
        "plain = dist.average_gradients({n: g.copy() for n, g in grads.items()}, group)\n"
        "order = list(reversed(shapes))\n"
        "r = dist.GradientReducer(group, bucket_bytes=30000)\n"
        "r.ready(grads, order[:3])\n"
        "started = len(r.pending)                  # buckets on their way before finish\n"
        "r.finish(grads)\n"
        "assert started >= 2 and len(shapes) > started, started\n"
        "assert all(np.array_equal(grads[n], plain[n]) for n in grads)\n"
        "print('ok', group.rank, flush=True)\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok") == 2


def test_zero1_on_one_process_is_the_plain_run(tmp_path, capsys):
    plain = train_cmd.train(cli.build_parser().parse_args(options(tmp_path, "a")))
    zero = train_cmd.train(cli.build_parser().parse_args(options(tmp_path, "b", "--zero", "1")))
    np.testing.assert_allclose(zero, plain, rtol=1e-12)
    assert_same_run(tmp_path / "a", tmp_path / "b", rtol=1e-12)
    capsys.readouterr()


def test_nproc_without_mpi_is_a_usage_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    # a venv without the dist extra: no mpiexec beside the interpreter, none on PATH
    from nanonorm.commands import train_launch
    monkeypatch.setattr(train_launch.sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        cli.main(options(tmp_path, "a") + ["--nproc", "2"])
    assert stop.value.code == 2
    assert 'pip install "nanonorm[dist]"' in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
