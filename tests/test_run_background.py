"""src/run/background.py and the fold's writes on their thread: copies training cannot change, errors that come back
to the loop, a kill while last.pt is being written that still resumes, and a run that ends only after its writes."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from src.engine import trainer
from src.run import atomic
from src.run.background import BackgroundWrites, snapshot
from src.run.rundir import RunDir
from tests.helpers import ROOT, tiny_cfg
from tests.test_run_saver import assert_same_records, fold_records


def test_a_snapshot_is_a_copy_that_training_cannot_change():
    weights = {"w": torch.ones(3), "groups": [{"lr": 0.1, "m": torch.zeros(2)}], "n": 4}
    copy = snapshot(weights)
    weights["w"].add_(1)
    weights["groups"][0]["m"].add_(5)
    assert torch.equal(copy["w"], torch.ones(3)) and torch.equal(copy["groups"][0]["m"], torch.zeros(2))
    assert copy["groups"][0]["lr"] == 0.1 and copy["n"] == 4


def test_the_writes_error_comes_back_to_the_loop_and_check_never_waits():
    writes, started, release = BackgroundWrites("t"), threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)

    writes.submit(slow)
    started.wait(5)
    t0 = time.monotonic()
    writes.check()  # still writing: returns at once
    assert time.monotonic() - t0 < 1
    release.set()
    failure = OSError(28, "No space left on device")

    def full_disk():
        raise failure

    writes.submit(full_disk)  # waits for `slow` first
    with pytest.raises(OSError) as caught:
        writes.wait()
    assert caught.value is failure
    writes.wait()  # raised once


def test_submit_waits_for_the_previous_job_so_jobs_keep_their_order():
    writes, done = BackgroundWrites("t"), []
    for i in range(5):
        writes.submit(lambda i=i: (time.sleep(0.01 * (5 - i)), done.append(i)))
    writes.wait()
    assert done == [0, 1, 2, 3, 4]


def test_a_run_ends_only_after_its_last_writes(few_people, tmp_path, monkeypatch):
    """Each last.pt takes 0.3 s to write; train() returns with every file written: the finished last.pt, cv.json."""
    real = atomic.save_torch

    def slow_save(obj, path):
        if path.name == "last.pt":
            time.sleep(0.3)
        real(obj, path)

    monkeypatch.setattr("src.run.checkpoint.save_torch", slow_save)
    cv = trainer.train(tiny_cfg(data_dir=few_people, log_dir=tmp_path, name="r", fold=0, epochs=2))
    run = RunDir(tmp_path, "r")
    assert torch.load(run.last(0), weights_only=True)["finished"] and run.cv.is_file() and cv["oof_rows"] > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("fold ")]  # no writer left behind


SLOW_LAST = """
import sys, time
from pathlib import Path
import src.run.checkpoint as checkpoint
from src.engine import trainer
from tests.helpers import tiny_cfg

real = checkpoint.save_torch
def slow_save(obj, path):
    if path.name == "last.pt" and obj["epoch"] == 1:
        Path(sys.argv[3]).touch()  # the writer thread has the state of epoch 1 in hand
        time.sleep(60)
    real(obj, path)
checkpoint.save_torch = slow_save
trainer.train(tiny_cfg(data_dir=sys.argv[1], log_dir=sys.argv[2], name="killed", fold=0, epochs=3,
                       deterministic="true", oof_from="last"))
"""


@pytest.mark.slow
def test_a_kill_while_last_pt_is_written_in_the_background_leaves_a_fold_that_resumes(few_people, tmp_path):
    settings = dict(data_dir=few_people, log_dir=tmp_path, fold=0, epochs=3, deterministic="true", oof_from="last")
    trainer.train(tiny_cfg(name="straight", **settings))
    want = fold_records(RunDir(tmp_path, "straight"))
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LAST, str(few_people), str(tmp_path), str(marker)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read()[-2000:]
    time.sleep(0.5)  # the training loop has gone on into epoch 2 meanwhile
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = RunDir(tmp_path, "killed")
    assert torch.load(run.last(0), weights_only=True)["epoch"] == 0  # epoch 1's last.pt was never written
    trainer.train(tiny_cfg(name="killed", resume="true", **settings))
    assert_same_records(fold_records(run), want, "killed while last.pt of epoch 1 was written")
