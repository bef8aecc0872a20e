"""Shared fixtures: a small generated dataset and one tiny trained run, built once per session."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

# A tiny timm model at a small size: a whole fold takes seconds on 2 CPU cores.
TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--batch_size", "8", "--epochs", "2", "--num_workers", "0", "--n_folds", "2", "--aug", "light",
        "--neck_dim", "32", "--msd_count", "2", "--optimizer", "adamw", "--lr", "1e-3", "--scheduler", "none",
        "--infer_batch_size", "16"]


def make_data(out: Path, train_people=24, eval_people=4, seed=6, size="96x128"):
    from tools.make_synthetic_data import main

    main(["--out", str(out), "--train_people", str(train_people), "--eval_people", str(eval_people),
          "--seed", str(seed), "--size", size])
    return out


def run_py(*args, cwd=ROOT, timeout=600, check=True, env=None):
    """Run a repo entry point in a subprocess; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="session")
def trained_run(dataset, tmp_path_factory):
    """(log_dir, name) of a finished 2-fold, 2-epoch run of the tiny model."""
    log_dir = tmp_path_factory.mktemp("logs")
    from train import main

    assert main(["--data_dir", str(dataset), "--name", "tiny", "--log_dir", str(log_dir), *TINY]) == 0
    return log_dir, "tiny"


@pytest.fixture
def own_run(trained_run, tmp_path):
    """(log_dir, name): this test's own copy of the trained run, as training left it (other tests may have
    inferred the shared one), so the test may damage or extend it."""
    from src.rundir import RunDir, prediction_files

    log_dir, name = trained_run
    logs = tmp_path / "logs"
    shutil.copytree(log_dir / name, logs / name)
    for f in prediction_files(RunDir(logs, name).submission).values():
        f.unlink(missing_ok=True)
    return logs, name


def tiny_cfg(cls=None, **overrides):
    """A config of `cls` (default TrainConfig) with the TINY settings it takes, then `overrides`."""
    from src.config import TrainConfig, fields_of, parse

    cls = cls or TrainConfig
    args = [a for key, value in zip(TINY[::2], TINY[1::2]) if key[2:] in fields_of(cls) for a in (key, value)]
    for k, v in overrides.items():
        args += [f"--{k}", str(v)]
    return parse(args, cls)


def pytest_collection_modifyitems(items):
    """A test that uses the trained run trains a model (once per session): it is slow by definition."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):  # own_run included: the closure counts
            item.add_marker(pytest.mark.slow)
