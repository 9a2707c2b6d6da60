"""The bench without a GPU: it must say why there are no GPU rows and still run its CPU part.

(The GPU timings themselves need a GPU; see docs/gpu.md. A GPU row is the same case's runner
with the `cuda` or `torch-cuda` provider: no case can lose its GPU row on its own.)
"""
import pytest

from nanonorm.bench import core, study
from nanonorm.bench.providers import PROVIDERS, gpu_missing

NO_GPU = gpu_missing() is not None


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present: the no-GPU path cannot be taken")
def test_no_gpu_is_reported_cleanly():
    assert "no GPU" in gpu_missing()
    assert PROVIDERS["cuda"].missing() == gpu_missing()
    result = core.run_grid(quick=True, only=["gelu_fwd"], repeats=1, progress=False,
                           providers=["numba", "cuda"])
    assert {r["provider"] for r in result["rows"]} == {"numba"}
    assert "no GPU" in result["gpu"]


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present: the no-GPU path cannot be taken")
def test_study_table_runs_its_cpu_rows_and_leaves_out_gpu_ones():
    rows = study.study_table(quick=True, providers=["reference", "cupy", "torch-cuda"])
    assert [r["provider"] for r in rows] == ["reference"]
    r = rows[0]
    assert r["device"] == "cpu" and min(r["build_s"], r["forward_s"], r["train_s"]) > 0
    assert r["peak_rss_GiB"] > 0                     # measured in the row's own process
    table = study.render_study(rows, quick=True)
    assert "| reference | cpu |" in table and "forward B=1, T=16" in table


def test_a_study_row_that_fails_is_reported_and_the_table_still_renders():
    # each row runs in a child process: its failure (here a bad provider name; in practice
    # running out of memory) becomes that row's error instead of ending the run
    row = study._study_in_child("no-such-provider", quick=True)
    assert row["provider"] == "no-such-provider" and "ValueError" in row["error"]
    assert "| no-such-provider | cpu | failed: exit 1" in study.render_study([row], quick=True)
