"""The entry points' command line as a whole: the launcher scripts find a Python without a venv."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow  # subprocesses or a real image decode: seconds each
def test_recipe_scripts_run_without_a_venv_from_python_on_path(dataset, tmp_path):
    """A checkout with no .venv: the launcher takes $PYTHON, else `python` on PATH."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (checkout / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, checkout / f)
    assert not (checkout / ".venv").exists()
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # keeps the venv's packages
    (shims / "python").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    for env in ({"PYTHON": sys.executable}, {"PATH": f"{shims}:{os.environ['PATH']}"}):
        proc = subprocess.run(["bash", "experiments/quick.sh", "--check_data", "--n_folds", "2"], cwd=checkout, capture_output=True,
                              text=True, env={**base, **env, "DATA_DIR": str(dataset), "NAME": "n"}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert '"folds_disjoint": true' in proc.stdout


@pytest.mark.slow
def test_the_launcher_resolves_relative_paths_against_the_callers_folder(dataset, tmp_path):
    caller = tmp_path / "here"
    caller.mkdir()
    (caller / "data").symlink_to(dataset)
    (caller / "mine.yaml").write_text("n_folds: 2\n")
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "quick.sh"), "--check_data", "--config", "mine.yaml"],
                          cwd=caller, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DATA_DIR": "data", "LOG_DIR": "logs", "NAME": "n"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["data_dir"] == str(caller / "data") and len(report["folds"]) == 2  # mine.yaml was applied


def test_a_gpu_count_that_is_not_a_number_is_one_line_and_exit_2():
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "quick.sh")], capture_output=True, text=True,
                          env={**os.environ, "GPUS": "two", "DATA_DIR": "/nonexistent"})
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "error: GPUS must be a whole number of GPUs (1 or more), got 'two'"]
