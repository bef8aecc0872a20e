"""Shared fixtures: a small generated dataset and one tiny trained run, built once per session."""
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY, make_data


def pytest_configure(config):
    """Under pytest-xdist, each worker (and every process it starts) takes its share of the cores: torch's default
    of one thread per core in every worker oversubscribes them, and its threads then slow down many times over."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="session")
def few_people(tmp_path_factory) -> Path:
    """Eight people (56 photos) at a small size: a fold of the tiny model trains in a moment."""
    return make_data(tmp_path_factory.mktemp("few") / "d", train_people=8, eval_people=2, seed=3, size="48x64")


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
    from src.run.rundir import ONNX_EXPORTS, RunDir, prediction_files

    log_dir, name = trained_run
    logs = tmp_path / "logs"
    shutil.copytree(log_dir / name, logs / name)
    for f in prediction_files(RunDir(logs, name).submission).values():
        f.unlink(missing_ok=True)
    shutil.rmtree(logs / name / ONNX_EXPORTS, ignore_errors=True)  # the export cache of other tests' infers
    return logs, name


def pytest_collection_modifyitems(items):
    """A test that uses the trained run trains a model (once per session): it is slow by definition."""
    for item in items:
        if "trained_run" in getattr(item, "fixturenames", ()):  # own_run included: the closure counts
            item.add_marker(pytest.mark.slow)
