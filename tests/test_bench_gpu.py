"""bench/gpu.py without a GPU: it must say why there are no GPU rows and still run its CPU part.

(The GPU timings themselves need a GPU; see docs/gpu.md.)
"""
import json

import pytest

gpu = pytest.importorskip("bench.gpu", reason="run from the repository root (bench/ importable)")
from nanonorm.bench.core import CASES  # noqa: E402

NO_GPU = gpu.available() is not None


def test_every_kernel_case_has_a_cuda_runner():
    # a renamed or new bench.core case must not silently lose its GPU row
    for case in CASES:
        if case.name.startswith("gpt2") or case.name == "adamw_step":   # study table / cupy
            continue
        assert callable(gpu._cuda_runner(case.name, {})), case.name


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present: the no-GPU path cannot be taken")
def test_no_gpu_is_reported_cleanly(tmp_path, capsys):
    assert "no GPU" in gpu.available()
    assert gpu.cuda_rows(CASES, quick=True) == []
    out = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--json", str(out)]) == 0
    assert "GPU rows skipped: no GPU" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["gpu"] is False and data["rows"] == [] and "no GPU" in data["reason"]


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present: the no-GPU path cannot be taken")
def test_study_table_runs_its_cpu_rows_and_leaves_out_gpu_ones():
    rows = gpu.study_table(quick=True, providers=["reference", "cupy", "torch-cuda"])
    assert [r["provider"] for r in rows] == ["reference"]
    r = rows[0]
    assert r["device"] == "cpu" and min(r["build_s"], r["forward_s"], r["train_s"]) > 0
    assert r["peak_rss_GiB"] > 0                     # measured in the row's own process
    table = gpu.render_study(rows, quick=True)
    assert "| reference | cpu |" in table and "forward B=1, T=16" in table


def test_a_study_row_that_fails_is_reported_and_the_table_still_renders():
    # each row runs in a child process: its failure (here a bad provider name; in practice
    # running out of memory) becomes that row's error instead of ending the run
    row = gpu._study_in_child("no-such-provider", quick=True)
    assert row["provider"] == "no-such-provider" and "ValueError" in row["error"]
    assert "| no-such-provider | cpu | failed: exit 1" in gpu.render_study([row], quick=True)
