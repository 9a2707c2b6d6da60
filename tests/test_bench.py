"""Smoke test of the benchmark grid: the quick sizes run, every row is there and validated.

Speed is not asserted (the machine is shared); only that the grid runs and its outputs agree.
"""
import json

import pytest

from nanonorm.bench import cli, core, timing
from nanonorm.bench.cases import all_cases


def test_quick_grid(tmp_path):
    result = core.run_grid(quick=True, repeats=1, progress=False)
    json.dumps(result, default=str)                       # JSON-serialisable
    rows = result["rows"]
    names = {r["case"] for r in rows}
    assert {c.name for c in all_cases()} <= names
    for r in rows:
        assert r["ms"] > 0 and r["rate"] > 0
        assert r["validated"] is not False, (r["case"], r["provider"])
        if r["provider"] == "numba":
            assert r["compile_s"] is not None
    assert result["machine"]["triad_GBps"] > 0 and result["machine"]["sgemm_GFLOPps"] > 0
    core.plot(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert "| layernorm_fwd |" in core.render_table(result)


def test_only_filter_and_cli(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "r.json"
    code = cli.main(["--quick", "--only", "layernorm_fwd", "--repeats", "1", "--json", str(out),
                      "--plot", str(tmp_path / "r.png"), "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())
    assert {r["case"] for r in data["rows"]} == {"layernorm_fwd", "layernorm_fwd_bwd"}
    assert {r["provider"] for r in data["rows"]} == {"reference", "numba", "torch"}


def test_gpu_rows_and_study_table_through_the_main_bench(tmp_path, capsys):
    # `python -m bench --study`: the cuda provider joins when CuPy sees a GPU, and says why
    # not otherwise; the study's table (construction, forward, training steps) has the CPU rows
    from nanonorm.bench.providers import gpu_missing
    out = tmp_path / "r.json"
    code = cli.main(["--quick", "--only", "gelu_fwd", "--repeats", "1", "--study",
                      "--json", str(out), "--plot", str(tmp_path / "r.png"), "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())
    printed = capsys.readouterr().out
    providers = {r["provider"] for r in data["rows"]}
    if gpu_missing() is None:
        assert "cuda" in providers and data["gpu"] == "present"
    else:
        assert "cuda" not in providers and f"GPU rows skipped: {gpu_missing()}" in printed
    study = {r["provider"] for r in data["study"]}
    assert {"reference", "numba", "numba-recompute"} <= study
    assert "| numba | cpu |" in printed


def test_scaling_sweeps_through_the_main_bench(tmp_path, capsys):
    # `python -m bench --scaling`: every sweep's points, their slopes, a table and a plot
    from nanonorm.bench import scaling
    out = tmp_path / "r.json"
    code = cli.main(["--quick", "--only", "gelu_fwd", "--repeats", "1", "--scaling",
                     "--json", str(out), "--plot", str(tmp_path / "r.png"), "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())["scaling"]
    assert [r["T"] for r in data["points"] if r["sweep"] == "attention"] == \
        list(scaling.ATTENTION_T_QUICK)
    assert {s["sweep"] for s in data["slopes"]} == set(scaling.IDEAL)
    assert all(r["seconds"] > 0 and r["peak_MiB"] >= 0 for r in data["points"])
    assert "log-log slope of time" in capsys.readouterr().out
    assert (tmp_path / "r_scaling.png").stat().st_size > 0


def test_slope_is_the_log_log_least_squares_fit():
    from nanonorm.bench.scaling import slope
    assert slope([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    assert slope([256, 4096], [5.0, 5.0]) == pytest.approx(0.0, abs=1e-12)


def test_providers_take_turns_and_each_gets_its_repeats(monkeypatch):
    # side by side means interleaved: the providers' calls come in blocks taken in turns, so
    # drift on the machine lands on every provider alike; a fast row (more calls than
    # blocks) warms each block with an untimed call
    monkeypatch.setattr(timing, "ROUNDS", 2)
    monkeypatch.setattr(timing, "SETTLE_S", 0.0)
    calls = []
    fns = {p: (lambda p=p: calls.append(p)) for p in ("reference", "numba", "torch")}
    medians = timing.interleaved(fns, {"reference": 1, "numba": 3, "torch": 2})
    assert calls == ["numba", "numba", "torch",                         # round 1 (numba: warm)
                     "reference", "numba", "numba", "numba", "torch"]   # round 2
    assert set(medians) == set(fns) and all(m >= 0 for m in medians.values())


def test_fast_rows_repeat_for_the_time_budget_within_bounds():
    assert timing.repeats("numba", False, False, 0.01, None) == int(timing.TIME_BUDGET_S / 0.01)
    assert timing.repeats("numba", False, False, 1e-6, None) == timing.MAX_REPEATS
    assert timing.repeats("reference", False, False, 10.0, None) == 3      # slow: the minimum
    assert timing.repeats("torch", True, False, 10.0, None) == 5           # model / AdamW rows
    assert timing.repeats("torch", False, False, 1e-3, 4) == 4             # --repeats wins
    assert timing.repeats("torch", False, True, 1e-3, None) == 2           # --quick


@pytest.mark.parametrize("argv, option", [
    (["--repeats", "0"], "--repeats"), (["--repeats", "x"], "--repeats"),
    (["--only", "no_such_case"], "--only"), (["--providers", "nope"], "--providers"),
    (["--json", "{missing}/r.json"], "--json"), (["--json", "{dir}"], "--json"),
    (["--plot", "{missing}/r.png"], "--plot"),
])
def test_bad_arguments_are_refused_before_any_work(argv, option, tmp_path, capsys, monkeypatch):
    """One line naming the option, exit 2, nothing run (a grid that fails at its end, after
    minutes, on an unwritable --json loses the run)."""
    monkeypatch.setattr(core, "run_grid", lambda **kw: pytest.fail("the grid ran"))
    argv = [a.format(missing=tmp_path / "missing", dir=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--quick", "--json", str(tmp_path / "ok.json"), *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err
    assert not (tmp_path / "ok.json").exists()


def test_the_step_under_the_conditions_of_real_use_runs_on_nanonorms_threads():
    # torch imported first or after, a user's parallel @njit loop first, a busy core: every
    # process ran the kernels on nanonorm's own threads and none but the user started Numba's
    pytest.importorskip("torch")
    from nanonorm.bench import conditions
    rows = conditions.rows(quick=True, rounds=1)
    assert [r["provider"] for r in rows] == list(conditions.CONDITIONS)
    n = rows_threads()
    for r in rows:                           # Numba's own threads: only the user's loop starts them
        started = "started" if "@njit" in r["provider"] else "not started"
        assert r["threads"] == f"nanonorm x{n}, numba {started}", r
    assert all(r["ms"] > 0 for r in rows) and rows[0]["ratio_to_alone"] == 1.0
    assert "| beside a busy process on one core |" in conditions.render(rows)


def rows_threads() -> int:
    from nanonorm.kernels.cpu.pool import default_threads
    return default_threads()


def test_dist_rows_through_the_main_bench(tmp_path, capsys):
    # `python -m bench --dist`: 1 process x all cores against 2 processes (mpiexec), each row
    # with its step time and the time in the gradients' collectives
    import sys
    from pathlib import Path
    if not (Path(sys.executable).parent / "mpiexec").exists():
        pytest.skip("no MPI here: pip install \".[dist]\"")
    out = tmp_path / "r.json"
    code = cli.main(["--quick", "--only", "gelu_fwd", "--repeats", "1", "--dist",
                     "--json", str(out), "--plot", str(tmp_path / "r.png"), "--no-progress"])
    assert code == 0
    rows = json.loads(out.read_text())["distributed"]
    assert [(r["processes"], r["sent"]) for r in rows] == [
        (1, "-"), (2, "during it"), (2, "after the backward")]
    assert all(r["step_s"] > 0 for r in rows), rows
    assert rows[0]["comm_s"] == 0 and rows[1]["comm_s"] > 0 and rows[2]["comm_s"] > 0
    assert "in collectives" in capsys.readouterr().out
