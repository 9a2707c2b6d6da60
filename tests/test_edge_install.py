"""One package whatever the install: the source tree, `pip install .` and `pip install -e .` run
the same kernels, and a fast path that cannot load is never skipped without a word.

Each check runs in a fresh interpreter, as a user's shell would start one.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

DISPATCH = ("import numpy as np, nanonorm, nanonorm.kernels.cpu as k; "
            "from nanonorm.dispatch import implementation_for; "
            "print(nanonorm.__file__); print(k.__file__); "
            "print(implementation_for('layer_norm_forward', np.zeros((2, 3), np.float32)))")


def python(*args, cwd, env=None, check=True):
    run = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env={**os.environ, **(env or {})})
    if check:
        assert run.returncode == 0, f"{args} in {cwd} failed:\n{run.stdout}\n{run.stderr}"
    return run


def fake_numba(tmp_path, error: str) -> dict:
    """An environment whose `import numba` fails with `error` (a missing or broken install)."""
    pkg = tmp_path / "fake" / "numba"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise {error}\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(ROOT)])}


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_dispatch_runs_the_numba_kernels_of_this_checkout_from_any_directory(where, tmp_path):
    cwd = ROOT if where == "root" else tmp_path
    package, kernels, impl = python("-c", DISPATCH, cwd=cwd).stdout.split()
    assert impl == "numba"
    assert Path(package).resolve().parent == (ROOT / "nanonorm").resolve()
    assert Path(kernels).resolve().is_relative_to((ROOT / "kernels").resolve())


def test_commands_run_from_the_root_and_from_elsewhere(tmp_path):
    assert "--quick" in python("-m", "bench", "--help", cwd=ROOT).stdout
    for cwd in (ROOT, tmp_path):
        assert "--quick" in python("-m", "nanonorm.bench", "--help", cwd=cwd).stdout
        info = python("-m", "nanonorm", "info", cwd=cwd).stdout
        assert "layer_norm_forward" in info and "UNAVAILABLE" not in info
        assert "numba" in info.split("dispatch for NumPy arrays:")[1]


def test_an_installed_package_named_kernels_is_not_shadowed_from_the_root(tmp_path):
    # PyPI's `kernels` (which transformers imports) must win over this repository's folder
    # of that name when Python starts in the root, where the folder is first on sys.path
    (tmp_path / "site" / "kernels").mkdir(parents=True)
    (tmp_path / "site" / "kernels" / "__init__.py").write_text("WHO = 'the installed one'\n")
    script = "import kernels, nanonorm.kernels.cpu; print(kernels.WHO)"
    run = python("-c", script, cwd=ROOT, env={"PYTHONPATH": str(tmp_path / "site")})
    assert run.stdout.strip() == "the installed one"


@pytest.mark.parametrize("error", ['ImportError("No module named llvmlite")',
                                   'OSError("libllvmlite.so: cannot open shared object file")'])
def test_a_missing_or_broken_numba_warns_once_naming_cause_and_cost(error, tmp_path):
    script = ("import warnings, numpy as np\n"
              "import nanonorm.functional as F\n"
              "from nanonorm.dispatch import implementation_for\n"
              "with warnings.catch_warnings(record=True) as seen:\n"
              "    warnings.simplefilter('always')\n"
              "    for _ in range(3):\n"
              "        y = F.layer_norm(np.ones((2, 3)), 3); p = F.softmax(np.ones((2, 3)))\n"
              "print(len(seen)); print(seen[0].category.__name__); print(seen[0].message)\n"
              "print(implementation_for('softmax_forward', np.ones(2)))\n"
              "assert abs(p.sum(-1) - 1).max() < 1e-12\n")
    env = fake_numba(tmp_path, error)
    count, category, message, impl = python("-c", script, cwd=tmp_path, env=env
                                            ).stdout.splitlines()
    assert (count, category, impl) == ("1", "FallbackWarning", "reference")
    assert error.split("(")[0] in message and "slower" in message
    assert error.split('"')[1] in message
    info = python("-m", "nanonorm", "info", cwd=tmp_path, env=env).stdout
    assert "UNAVAILABLE: numba" in info and error.split('"')[1] in info


@pytest.mark.parametrize("env", [{"NANONORM_IMPL": "reference"}, "broken numba"])
def test_the_suite_refuses_to_run_when_its_kernels_are_not_the_ones_running(env, tmp_path):
    if env == "broken numba":
        env = fake_numba(tmp_path, 'ImportError("numba is broken")')
    run = python("-m", "pytest", "-p", "no:cacheprovider", "-q",
                 "tests/test_readme.py::test_ci_runs_the_readme_test_command",
                 cwd=ROOT, env=env, check=False)
    assert run.returncode != 0
    assert "Numba kernels" in run.stderr + run.stdout


def test_the_wheel_holds_the_kernels_and_runs_outside_the_tree(tmp_path):
    # the venv's own setuptools when it has one (no download); else pip fetches it to build
    flags = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    # from a clean copy of the tree: a checkout's stale build/ and *.egg-info (setuptools
    # reuses them) once hid a package missing from setup.cfg's list
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", ".venv*", "__pycache__", ".git", ".hypothesis", "dist"))
    python("-m", "pip", "wheel", "-q", "--no-deps", *flags, "-w", str(tmp_path / "dist"),
           str(source), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("nanonorm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in ("nanonorm/kernels/cpu/layernorm.py", "nanonorm/kernels/cuda/layernorm.py",
                   "nanonorm/bench/core.py", "nanonorm/bench/__main__.py"):
        assert member in names
    assert not any(n.startswith(("kernels/", "bench/", "tests/")) for n in names)
    # every module of the source tree is in the wheel (a package left out of setup.cfg's list
    # imported fine from an editable install, whose finder reaches into the tree, and broke
    # `pip install .`: nanonorm.specs)
    for source in sorted((ROOT / "nanonorm").rglob("*.py")):
        member = source.relative_to(ROOT).as_posix()
        if "__pycache__" not in member and not source.relative_to(ROOT / "nanonorm").parts[0] \
                in ("kernels", "bench"):
            assert member in names, member
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)            # what pip install puts in site-packages
    env = {"PYTHONPATH": str(site)}
    package, kernels, impl = python("-c", DISPATCH, cwd=tmp_path, env=env).stdout.split()
    assert impl == "numba" and Path(package).is_relative_to(site)
    assert Path(kernels).is_relative_to(site)
    assert "--quick" in python("-m", "nanonorm.bench", "--help", cwd=tmp_path, env=env).stdout
    assert "numba" in python("-m", "nanonorm", "info", cwd=tmp_path, env=env).stdout
