"""`nanonorm report` writes report.md/html, results.json (strict JSON) and every figure."""
import json
import re

import pytest

from nanonorm import cli
from nanonorm.studies import document, report, timing


def _strict(text):
    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=no_constant)


@pytest.fixture
def tiny_timing(monkeypatch):
    # the smallest model, reference only: the Numba kernels have their own tests
    monkeypatch.setitem(timing.SIZES, "quick", {"preset": "tiny", "batch": 1, "seq": 8})
    providers = timing.providers
    monkeypatch.setattr(timing, "providers",
                        lambda: [p for p in providers() if p["impl"] == "reference"
                                 or not p["available"]])


def test_report_quick_writes_markdown_html_json_and_figures(tmp_path, tiny_timing, capsys):
    out = tmp_path / "rep"
    assert cli.main(["report", "--quick", "--out", str(out), "--seed", "1"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    results = _strict((out / "results.json").read_text(encoding="utf-8"))
    assert results["errors"] == {}
    assert set(results["studies"]) == {s.key for s in report.STUDIES}
    assert results["options"]["quick"] and results["options"]["seed"] == 1
    assert {"date", "cpu", "gpu", "versions"} <= set(results["environment"])
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) == sum(len(s.figures) for s in report.STUDIES)
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in (out / "report.html").read_text(encoding="utf-8")
    # the seed's figures are quoted beside the measurements
    assert "0.2–0.4" in md and "124,439,808" in md and "~20 s" in md
    assert "B = 1, T = 8" in md                        # the timing size is stated
    if results["environment"]["gpu"] is None:
        assert "This machine has no GPU" in md
    assert results["studies"]["repeated_products"]["raw_float32"]["scales"]["2.0"][
        "final_norm"] == "inf"                         # inf survives as a string


def test_a_failing_study_is_recorded_and_the_rest_still_run(tmp_path):
    def boom(options):
        raise RuntimeError("no such model")
    broken = report.Study("broken", "0. broken", boom, (), lambda r, f: [])
    results = report.run_report(tmp_path, studies=(broken, report.STUDIES[2]), progress=False)
    assert "no such model" in results["errors"]["broken"]
    assert "gamma_beta" in results["studies"]
    assert "This study failed" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_document_renders_tables_and_escapes_html():
    blocks = [("h", 2, "a <b>"), ("p", "use `x|y` **now**"),
              ("table", ["k", "v"], [["a|b", 1]]), ("img", "f.png", "cap")]
    md = document.to_markdown(blocks)
    assert "## a <b>" in md and "| a\\|b | 1 |" in md and "![cap](f.png)" in md
    page = document.to_html(blocks, "t")
    assert "a &lt;b&gt;" in page and "<code>x|y</code>" in page
    assert "<strong>now</strong>" in page and "<td>a|b</td>" in page


def test_report_picks_up_a_nanonorm_train_checkpoint_in_the_working_directory(
        tmp_path, monkeypatch, tiny_timing):
    from nanonorm.gpt import GPT, GPTConfig

    GPT(GPTConfig.preset("tiny")).save(tmp_path / "out")     # `nanonorm train`'s default --out
    monkeypatch.chdir(tmp_path)
    only_ln = tuple(s for s in report.STUDIES if s.key == "ln_parameters")
    monkeypatch.setattr(report, "STUDIES", only_ln)
    assert cli.main(["report", "--out", "rep"]) == 0
    results = _strict((tmp_path / "rep" / "results.json").read_text(encoding="utf-8"))
    assert results["studies"]["ln_parameters"]["source"] == "checkpoint"
    assert results["options"]["checkpoint"] == "out"
