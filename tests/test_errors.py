"""src/errors.py: one error base; fail_cleanly turns it, and only it, into a line and an exit code."""
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.loaders import make_loader
from src.errors import (CheckpointError, ConfigError, DataError, MaskclsError, NoSpace, RunBusy, RunNotFound,
                        fail_cleanly, nothing_half_written)


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


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_are_one_line_and_their_exit_codes_in_every_entry_point(capsys, sig, code):
    with pytest.raises(SystemExit) as exit_info, fail_cleanly():
        os.kill(os.getpid(), sig)
        time.sleep(30)  # the signal arrives first
    assert exit_info.value.code == code
    assert capsys.readouterr().err.splitlines() == [f"interrupted ({signal.Signals(sig).name}); every output is "
                                                    f"replaced whole or not at all, so nothing was left half-written"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


ENTRY_POINTS = ["train.py", "infer.py", "pseudo_train.py", "predict.py", "export.py", "sweep.py", "app.py"]


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_every_entry_point_runs_its_work_under_fail_cleanly(script):
    """The signal handler and the one-line errors come with fail_cleanly: each entry point's main runs its work in
    it (read from its source, so a new entry point without it fails here)."""
    import ast

    from tests.helpers import ROOT

    tree = ast.parse((ROOT / script).read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    withs = [w for w in ast.walk(main) if isinstance(w, ast.With)
             and any(isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "id", "") == "fail_cleanly"
                     for i in w.items)]
    assert withs, f"{script}: main() does not run its work under fail_cleanly()"


TEARDOWN_SIGNAL = """
import os, signal, sys, time
import torch
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter as Iter
from src.errors import fail_cleanly

shutdown = Iter._shutdown_workers
def shutdown_with_a_signal(self):
    os.kill(os.getpid(), signal.SIGTERM)  # lands inside the loader's __del__, where Python ignores what it raises
    shutdown(self)
Iter._shutdown_workers = shutdown_with_a_signal

with fail_cleanly():
    it = iter(DataLoader(torch.arange(8), batch_size=2, num_workers=2))
    next(it)
    print("tearing down", flush=True)
    del it
    time.sleep(60)  # the work that would go on
"""


def test_a_signal_inside_a_loaders_teardown_still_ends_the_process_within_seconds():
    from tests.helpers import ROOT

    proc = subprocess.Popen([sys.executable, "-c", TEARDOWN_SIGNAL], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "tearing down"
    start = time.monotonic()
    proc.wait(timeout=30)
    ended = time.monotonic() - start
    err = proc.stderr.read()
    assert proc.returncode == 143 and ended < 3, (ended, err)
    assert err.splitlines() == [nothing_half_written("SIGTERM")]  # Python's "Exception ignored in ..." is not shown


def test_a_signal_swallowed_on_the_way_still_ends_the_block_as_interrupted(capsys):
    with pytest.raises(SystemExit) as exit_info, fail_cleanly():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        except KeyboardInterrupt:
            pass  # a finaliser ate it; the block then ends normally
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.startswith("interrupted (SIGINT)")
