"""The README stays true: its Python examples run, its commands are the ones CI runs."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_python_examples_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # examples that write files write them here
    namespace = {"__name__": "readme"}   # later blocks build on earlier ones, as a reader does
    assert BLOCKS
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    tests = [fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)]
    assert tests
    for fn in tests:
        fn()   # the test-kit example defines tests: they must pass too


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test,dist]"' in README and 'pip install -q -e ".[test,dist]"' in ci
    assert "nanonorm report" in README and "python -m pytest" in ci


def test_the_test_kit_example_passes_when_copied_into_a_users_own_file(tmp_path):
    """Outside this suite: no conftest, Hypothesis' default settings, a cold Numba cache."""
    import os
    import subprocess
    import sys
    (block,) = [b for b in BLOCKS if "nanonorm.testing" in b]
    (tmp_path / "test_mine.py").write_text(block)
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_mine.py"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
