"""The run folder's owner: paths, the claim rule, and the launcher scripts that ask it."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from src.config.schema import CHECKPOINT_KINDS
from src.run.rundir import RunDir, latest, prediction_files
from src.errors import ConfigError, RunExists


def test_paths_of_a_run(tmp_path):
    run = RunDir(tmp_path, "r")
    assert run.config == tmp_path / "r" / "config.yaml" and run.metrics.name == "metrics.csv"
    assert run.last(2) == tmp_path / "r" / "fold2" / "last.pt" and run.oof(0).name == "oof.csv"
    assert [run.checkpoint(1, k).name for k in CHECKPOINT_KINDS] == ["best_f1.pt", "best_loss.pt", "best_acc.pt",
                                                                      "last.pt"]
    with pytest.raises(ConfigError, match="choose one of: best_f1, best_loss, best_acc, last"):
        run.checkpoint(0, "best")
    files = prediction_files(tmp_path / "subs" / "x.csv")
    assert files["probs"] == tmp_path / "subs" / "eval_probs.csv" and files["settings"].name == "inference.yaml"


def test_claim_new_resume_overwrite(tmp_path):
    run = RunDir(tmp_path, "r")
    assert run.claim(resume=False, overwrite=False) == "new" and run.root.is_dir()
    assert run.claim(resume=False, overwrite=False) == "new"  # a folder without config.yaml is no run yet
    run.config.write_text("lr: 0.1\n")
    (run.root / "fold0").mkdir()
    with pytest.raises(RunExists, match="already exists; use --resume .* or --overwrite"):
        run.claim(resume=False, overwrite=False)
    assert run.claim(resume=True, overwrite=False) == "resumed" and run.folds() == [0]
    assert run.claim(resume=False, overwrite=True) == "replaced"
    assert run.root.is_dir() and not any(run.root.iterdir())


def test_latest_run(tmp_path):
    assert latest(tmp_path) is None
    for name in ("a", "b"):
        RunDir(tmp_path, name).claim(False, False)
        RunDir(tmp_path, name).config.write_text("x: 1\n")
    os.utime(RunDir(tmp_path, "a").config, (1e9, 1e9))
    assert latest(tmp_path) == "b"


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
