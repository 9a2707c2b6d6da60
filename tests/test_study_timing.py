"""Study 8: the load is sampled while each row is timed, busy rows are marked and explained,
and the note's size runs only where the projection and the memory allow."""
import subprocess
import sys
import threading
import time

import pytest

from nanonorm.studies import load, sections_gpt, timing


class CountingSource:
    """A fake load source: returns `value`, counts its calls."""
    kind = "fake"

    def __init__(self, value):
        self.value, self.calls = value, 0
        self.called = threading.Event()

    def __call__(self):
        self.calls += 1
        if self.calls >= 3:
            self.called.set()
        return self.value


def test_monitor_samples_while_the_work_runs_not_only_at_the_start():
    source = CountingSource(0.0)
    with load.LoadMonitor(source, interval=0.01) as monitor:
        # the body waits for the thread's samples: at entry there was one call only
        assert source.called.wait(timeout=30), "the monitor's thread never sampled"
        during = source.calls
    assert during >= 3 and monitor.summary()["samples"] >= during + 1   # + the one at exit


def test_a_busy_source_marks_the_timing_busy_and_a_quiet_one_does_not():
    for value, busy in ((1.5, True), (0.0, False)):
        r = timing.time_model(preset="tiny", batch=1, seq=8, repeats=1, steps=1,
                              impl="reference", load_source=CountingSource(value))
        assert r["load"]["busy"] is busy
        assert r["load"]["mean_other_cores"] == value and r["load"]["kind"] == "fake"


def test_busy_threshold_is_a_tenth_of_the_cores():
    for cores, value, busy in ((2, 0.19, False), (2, 0.2, True), (16, 1.5, False)):
        with load.LoadMonitor(lambda: value, interval=60, cores=cores) as m:
            pass
        assert m.summary()["busy"] is busy


def test_other_processes_are_the_machine_busy_time_minus_our_own():
    readings = iter([(10.0, 1.0, 100.0), (13.0, 2.0, 102.0), (13.5, 2.5, 103.0)])
    state = {}

    def busy():
        state["now"] = next(readings)
        return state["now"][0]
    source = load.OtherProcesses(busy=busy, own=lambda: state["now"][1],
                                 clock=lambda: state["now"][2])
    assert source() is None                          # the first call primes
    assert source() == pytest.approx(1.0)            # (3 s − 1 s own) over 2 s
    assert source() == pytest.approx(0.0)            # all of it was ours


@pytest.mark.skipif(load.machine_busy_seconds() is None, reason="needs Linux /proc/stat")
def test_a_spinning_process_shows_up_as_other_load():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        source = load.OtherProcesses()
        source()
        time.sleep(1.0)
        # the spinner alone keeps one core busy when it runs; other work only adds
        assert source() > 0.3
    finally:
        spinner.kill()
        spinner.wait()


def _row(provider, impl, train, busy, preset="model5"):
    return {"provider": provider, "device": "cpu", "available": True, "note": "", "impl": impl,
            "preset": preset, "tie_weights": False, "parameters": 163_037_184, "batch": 4,
            "seq": 256, "construction_s": 1.0, "warmup_forward_s": 2.0, "forward_s": [1.0] * 5,
            "forward_total_s": 5.0, "forward_median_s": 1.0, "tokens_per_s_forward": 1024.0,
            "train_step_s": [train / 5] * 5, "train_total_s": train, "train_median_s": train / 5,
            "load": {"kind": "fake", "cores": 2, "samples": 9, "busy": busy,
                     "mean_other_cores": 1.2 if busy else 0.0,
                     "max_other_cores": 1.9 if busy else 0.0}}


def _result(rows, note_rows=()):
    return {"mode": "full", "size": {"preset": "model5", "batch": 4, "seq": 256}, "repeats": 5,
            "steps": 5, "rows": rows, "note_size": timing.NOTE_SIZE, "note_size_budget_s": 240,
            "note_rows": list(note_rows), "cpu_count": 2}


def _text(blocks):
    return " ".join(str(b) for b in blocks)


def test_numba_slower_than_the_reference_on_a_busy_machine_is_flagged_as_such():
    text = _text(sections_gpt.timing_section(_result(
        [_row("ref", "reference", 30.0, busy=False), _row("numba", "default", 60.0, busy=True)]),
        []))
    assert "Warning: the machine was busy while timing numba" in text
    assert "2.00" in text and "the load, not the kernels, is the likely cause" in text


def test_a_quiet_run_carries_no_busy_warning():
    text = _text(sections_gpt.timing_section(_result(
        [_row("ref", "reference", 60.0, busy=False), _row("numba", "default", 30.0, busy=False)]),
        []))
    assert "Warning: the machine was busy" not in text and "**busy**:" not in text
    assert "0.50." in text


def test_projection_scales_the_measured_times_by_the_tokens():
    row = _row("ref", "reference", 30.0, busy=False)
    # 8·1024 / (4·256) = 8 times the tokens: 1 s construction + 8 × (2 + 5 + 30) s
    assert timing.projected_seconds(row) == pytest.approx(1.0 + 8 * 37.0)


def test_note_size_is_skipped_when_the_projection_exceeds_the_budget():
    provider = {"name": "ref", "device": "cpu", "impl": "reference"}
    row = timing.note_size_row(provider, _row("ref", "reference", 30.0, busy=False),
                               repeats=5, steps=5, budget_s=100)
    assert "over the report's 100 s budget" in row["skipped"]
    assert "construction_s" not in row


def test_note_size_is_skipped_when_memory_would_not_fit(monkeypatch):
    monkeypatch.setattr(timing, "memory_available_bytes", lambda: 2**30)
    provider = {"name": "ref", "device": "cpu", "impl": "reference"}
    row = timing.note_size_row(provider, _row("ref", "reference", 0.01, busy=False),
                               repeats=5, steps=5, budget_s=1e9)
    assert "GiB available" in row["skipped"]
    # weights, gradients and two moments of Model 5, and three (8, 1024, 50257) float32 arrays
    assert row["memory_needed"] == 4 * (4 * 163_037_184 + 3 * 8 * 1024 * 50257)


def test_note_size_runs_in_a_child_process_when_it_fits(monkeypatch):
    monkeypatch.setattr(timing, "NOTE_SIZE", {"preset": "tiny", "batch": 1, "seq": 8})
    provider = {"name": "ref", "device": "cpu", "impl": "reference"}
    heard = []
    row = timing.note_size_row(provider, _row("ref", "reference", 0.01, busy=False),
                               repeats=1, steps=1, budget_s=1e9, progress=heard.append)
    assert "error" not in row, row
    assert row["preset"] == "tiny" and row["impl"] == "reference" and row["batch"] == 1
    assert row["peak_rss_GiB"] > 0 and row["load"]["samples"] >= 1
    assert any("child process" in h for h in heard)


def test_a_child_that_fails_gives_its_reason():
    row = timing.time_in_child(timeout_s=120, preset="no-such-preset", batch=1, seq=8)
    assert "unknown preset" in row["error"]
