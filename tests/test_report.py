"""`nanonorm report` writes report.md/html, results.json (strict JSON) and every figure."""
import json
import re

import pytest

from nanonorm import cli
from nanonorm.studies import convergence, document, ln_params, report, sources, timing


def _strict(text):
    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=no_constant)


def _tiny(monkeypatch):
    # the smallest sizes everywhere, reference only: the Numba kernels have their own tests
    monkeypatch.setitem(timing.SIZES, "quick", {"preset": "tiny", "batch": 1, "seq": 8})
    providers = timing.providers
    monkeypatch.setattr(timing, "providers",
                        lambda: [p for p in providers() if p["impl"] == "reference"
                                 or not p["available"]])
    monkeypatch.setitem(convergence.SETTINGS, "quick", {
        "steps": 2, "batch": 2, "seq": 8, "eval_every": 1, "lrs": (3e-3,), "seeds": (0,)})
    monkeypatch.setattr(convergence, "MODEL", {"preset": "tiny", "n_layer": 2, "n_embd": 16})
    monkeypatch.setitem(ln_params.TRAINING, "quick", {**ln_params.TRAINING["quick"], "steps": 3})
    monkeypatch.setattr(ln_params, "hub_reachable", lambda *a, **k: "not reachable: test")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")


@pytest.fixture
def tiny_timing(monkeypatch):
    _tiny(monkeypatch)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick report at the tiny sizes, with what each study said as it went."""
    out, heard = tmp_path_factory.mktemp("quick"), []
    with pytest.MonkeyPatch.context() as mp:
        _tiny(mp)
        results = report.run_report(out, report.Options(quick=True, seed=1),
                                    progress=lambda key, text: heard.append((key, text)))
    return out, results, heard


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
    # the notes' figures are quoted beside the measurements
    assert "0.2–0.4" in md and "124,439,808" in md and "~20 s" in md and "2.31" in md
    assert "B = 1, T = 8" in md                        # the timing size is stated
    if results["environment"]["gpu"] is None:
        assert "This machine has no GPU" in md
    assert results["studies"]["repeated_products"]["raw_float32"]["scales"]["2.0"][
        "final_norm"] == "inf"                         # inf survives as a string
    total = results["seconds"]["total"]
    assert f"took **{total:.1f} s**" in md             # the run states its duration
    assert "9 studies" in capsys.readouterr().out      # and says what it is about to do


def test_report_cites_every_note_by_title_and_no_path_outside_the_repository(quick_run):
    out, results, _ = quick_run
    assert results["errors"] == {}
    for page in ("report.md", "report.html"):
        text = (out / page).read_text(encoding="utf-8")
        assert not re.search(r"shared/|seeds/", text)
        assert not re.search(r"\b\d-[a-z0-9-]+\.md\b", text)   # no note file names
        for note in sources.NOTES.values():
            assert note.title in text
    md = (out / "report.md").read_text(encoding="utf-8")
    sections = md.split("\n## ")[1:]
    studies = [s for s in sections if s[0].isdigit()]
    assert len(studies) == len(report.STUDIES)
    for study, section in zip(report.STUDIES, studies):
        assert section.startswith(study.title.split(".")[0] + ".")
        # each study names its source note by title, and quotes the note as the note's
        assert f"Source: note {study.note}, “{sources.NOTES[study.note].title}”" in section
        assert f"note {study.note} says — " in section


def test_long_studies_report_their_sub_steps_as_they_go(quick_run):
    heard = quick_run[2]
    said = {}
    for key, text in heard:
        said.setdefault(key, []).append(text)
    assert "NumPy reference: training step 5/5" in said["timing"]
    assert any(t.startswith("run 3/3: no LayerNorm") for t in said["convergence"])
    assert "training 'tiny': step 3/3" in said["ln_parameters"]
    assert "untied: step 15/15" in said["parameter_counts"]
    assert [k for k, _ in heard if _ == "starting"] == [s.key for s in report.STUDIES]


def test_report_help_gives_every_options_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]
    for option in ("--out", "--quick", "--checkpoint", "--seed"):
        help_text = text.split(option, 1)[1].split(" --", 1)[0]
        assert "default:" in help_text, option


def test_a_failing_study_is_recorded_and_the_rest_still_run(tmp_path):
    def boom(options):
        raise RuntimeError("no such model")
    broken = report.Study("broken", "0. broken", 1, lambda o, p: boom(o), (), lambda r, f: [])
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
    assert results["studies"]["ln_parameters"]["source"]["kind"] == "checkpoint"
    assert results["options"]["checkpoint"] == "out"
