"""bench/gpu_check.sh without a GPU (its --dry mode), and `nanonorm info`'s CUDA fields.

The dry run proves the script's plumbing: every step runs (the sanitizer steps skip, saying
why) and its logs and summaries land in one folder. It says nothing about a GPU.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nanonorm.bench.providers import gpu_missing

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
STEPS = ["env", "tests", "kernels", "sync", "racecheck", "memcheck", "gpt", "bench"]


def _check(tmp_path, *args, **env):
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    run_env.update({"PYTHON": sys.executable, "OUT": str(tmp_path), **env})
    return subprocess.run(["bash", str(SCRIPT), *args], env=run_env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_the_dry_run_runs_every_step_into_one_folder(tmp_path):
    proc = _check(tmp_path, "--dry", GPU_CHECK_BUDGET="300")
    summary = (tmp_path / "summary.txt").read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary.splitlines()[-1] == (
        "GPU CHECK (DRY RUN, no GPU): 6 steps ok, 0 failed, 2 skipped (racecheck: dry run: "
        "compute-sanitizer needs a GPU, memcheck: dry run: compute-sanitizer needs a GPU)")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [s["name"] for s in data["steps"]] == STEPS and data["failed"] == []
    for s in data["steps"]:
        assert (s["status"], s["rc"]) == (("skipped", None) if "check" in s["name"] else
                                          ("ok", 0)), s
    assert data["mode"].startswith("DRY RUN") and data["took_s"] < 300
    log = (tmp_path / "steps.log").read_text()
    for name in STEPS[:4] + STEPS[6:]:
        assert f"=== {name}: ok (rc 0," in log
    assert "RESULT CUDA kernels ran on the simulator" in log
    assert "no GPU: not measurable" in log and "passed" in log
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["rows"] and all(r["validated"] for r in bench["rows"])
    gpt = json.loads((tmp_path / "gpt.json").read_text())
    assert [(r["who"], r["precision"]) for r in gpt["rows"]][:2] == [("nanonorm", "fp32"),
                                                                    ("nanonorm", "tf32")]
    assert not any("error" in r for r in gpt["rows"])
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["summary.txt", "summary.json", "steps.log", "bench.json", "bench.png", "gpt.json"])


def test_a_failed_step_is_in_the_last_line_and_the_exit_status(tmp_path):
    proc = _check(tmp_path, "--dry", PYTHON="false", GPU_CHECK_STEPS="env")
    last = (tmp_path / "summary.txt").read_text().splitlines()[-1]
    assert proc.returncode == 1
    assert last.startswith("GPU CHECK (DRY RUN, no GPU): 0 steps ok, 1 failed (env), 7 skipped")
    assert "--- env (failed), the end of its log:" in proc.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is present")
def test_without_a_gpu_and_without_dry_it_says_so(tmp_path):
    proc = _check(tmp_path)
    assert proc.returncode == 2 and "--dry" in proc.stderr


@pytest.mark.skipif(gpu_missing() is None, reason="a GPU is present: the no-GPU line differs")
@pytest.mark.parametrize("simulator", ["0", "1"])
def test_info_reports_cuda_in_one_line_without_a_gpu(simulator):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": simulator}
    run = [sys.executable, "-m", "nanonorm", "info"]
    text = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    cuda = json.loads(subprocess.run(run + ["--json"], env=env, capture_output=True, text=True,
                                     check=True).stdout)["cuda"]
    assert set(cuda) == {"numba_cuda", "simulator", "cupy", "runtime", "driver", "devices",
                         "missing", "kernels"}
    assert cuda["devices"] == 0 and "no GPU" in cuda["missing"]
    assert cuda["simulator"] is (simulator == "1") and cuda["numba_cuda"]
    line, = [x for x in text.splitlines() if x.startswith("cuda ")]
    assert "no GPU" in line and f"simulator {'on' if simulator == '1' else 'off'}" in line
    if simulator == "1":      # the tiny launch runs on the simulator instead
        assert cuda["kernels"] == {"ran": True, "on": "simulator", "error": None}
        assert line.endswith("CUDA kernels ran on the simulator, not a GPU")
    else:
        assert cuda["kernels"]["ran"] is None and line.endswith("CUDA kernels not run")
