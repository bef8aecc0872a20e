"""src/errors.py: one error base; fail_cleanly turns it, and only it, into a line and an exit code."""
import pickle

import pytest
import torch

from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.loaders import make_loader
from src.errors import (CheckpointError, ConfigError, DataError, MaskclsError, NoSpace, RunBusy, RunNotFound,
                        fail_cleanly)


def test_data_error_survives_pickling_and_a_worker(tmp_path):
    e = pickle.loads(pickle.dumps(DataError(["a.jpg: bad", "b.jpg: worse"])))
    assert e.problems == ["a.jpg: bad", "b.jpg: worse"]
    (tmp_path / "empty.jpg").write_bytes(b"")
    ds = FaceDataset(FileImages([tmp_path / "empty.jpg"] * 4))
    loader = make_loader(ds, torch.device("cpu"), 1, num_workers=2, prefetch_factor=2)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert len(caught.value.problems) == 1 and "empty.jpg: unreadable or corrupt image" in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]


@pytest.mark.parametrize("error, code, line", [
    (ConfigError("--lr must be > 0, got -1"), 2, "error: --lr must be > 0, got -1"),
    (RunNotFound("run logs/x: not found"), 1, "error: run logs/x: not found"),
    (CheckpointError("a.pt: truncated"), 1, "error: a.pt: truncated"),
    (NoSpace("no space left on device while writing x"), 1, "error: no space left on device while writing x"),
    (RunBusy("fold 0 of run r is held by process 7"), 1, "error: fold 0 of run r is held by process 7"),
    (DataError(["train.csv row 3: age 'x' is not a whole number"]), 1,
     "error: bad input data: train.csv row 3: age 'x' is not a whole number"),
])
def test_a_domain_error_is_one_line_and_its_exit_code(capsys, error, code, line):
    with pytest.raises(SystemExit) as exit_info, fail_cleanly():
        raise error
    assert exit_info.value.code == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_several_data_problems_are_listed_one_per_line(capsys):
    with pytest.raises(SystemExit), fail_cleanly():
        raise DataError(["a.csv row 2: bad", "b.csv row 5: worse"])
    assert capsys.readouterr().err.splitlines() == ["error: bad input data (2 problems):", "  - a.csv row 2: bad",
                                                    "  - b.csv row 5: worse"]


@pytest.mark.parametrize("stray", [FileNotFoundError("x"), ValueError("y"), KeyError("z")])
def test_a_built_in_exception_is_never_taken_for_a_domain_error(stray):
    assert not isinstance(stray, MaskclsError)
    with pytest.raises(type(stray)), fail_cleanly():  # it keeps its traceback
        raise stray


def test_a_worker_traceback_is_reduced_to_the_problem():
    text = "Traceback (most recent call last):\n  File ...\nsrc.errors.DataError:   - a.jpg: truncated JPEG\n"
    assert DataError(text).problems == ["a.jpg: truncated JPEG"]
