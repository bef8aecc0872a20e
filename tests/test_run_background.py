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


def test_a_full_disk_on_the_writer_thread_is_said_at_the_next_step_on_its_own_line_and_in_train_log(
        few_people, tmp_path, monkeypatch, capsys):
    """Epoch 0's last.pt meets a full disk while epoch 1 trains: the run stops at the next step of epoch 1 (not after
    the epoch), with the error on a line of its own, and train.log keeps it."""
    import train as train_py
    from src.engine import epoch as epoch_mod
    from src.errors import NoSpace
    from tests.helpers import TINY, cli

    failed, steps_after = threading.Event(), []

    def full_disk(obj, path):
        if path.name == "last.pt":
            time.sleep(0.2)  # epoch 1 is under way
            failed.set()
            raise NoSpace(f"no space left on device while writing {path}; the previous last.pt is intact")

    real_stop = epoch_mod.stop_if_signalled

    def counting():
        if failed.is_set():
            steps_after.append(1)
        real_stop()

    monkeypatch.setattr("src.run.checkpoint.save_torch", full_disk)
    monkeypatch.setattr(epoch_mod, "stop_if_signalled", counting)
    code, err = cli(train_py.main, "--data_dir", few_people, "--log_dir", tmp_path, "--name", "full", *TINY, "--fold",
                    "0", "--epochs", "3", "--batch_size", "2", capsys=capsys)
    assert code == 1 and failed.is_set()
    assert len(steps_after) <= 2  # of 14 steps in epoch 1: stopped where the error came back
    (line,) = [x for x in err.split("\n") if "no space left on device" in x]
    assert line.split("\r")[-1].startswith("error: no space left on device while writing"), repr(line)
    assert "no space left on device while writing" in RunDir(tmp_path, "full").train_log.read_text()


SIGNAL_IN_WRITES = """
import sys, time
from pathlib import Path
import src.run.checkpoint as checkpoint
import train

real = checkpoint.save_torch
def slow_save(obj, path):
    if path.name == "last.pt" and obj["epoch"] == 1:
        Path(sys.argv[3]).touch()  # the writer thread has epoch 1's last.pt in hand
        time.sleep(float(sys.argv[4]))
    real(obj, path)
checkpoint.save_torch = slow_save
sys.exit(train.main(["--data_dir", sys.argv[1], "--log_dir", sys.argv[2], "--name", "sig", "--fold", "0",
                     "--epochs", "4", "--num_workers", "0", "--model", "test_efficientnet", "--pretrained", "false",
                     "--img_height", "64", "--img_width", "48", "--batch_size", "2", "--aug", "light"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("write_s", [0.5, 60.0], ids=["writes-end-in-grace", "writes-outlast-it"])
def test_a_signal_while_an_epochs_files_are_written_says_which_last_pt_the_disk_keeps(few_people, tmp_path,
                                                                                      write_s):
    """SIGTERM while epoch 1's last.pt is being written: writes that end within the grace are kept and the line names
    epoch 1; writes that would take a minute are cut off at the deadline and the line names epoch 0. Either way the
    line names what last.pt holds afterwards, and the process ends with 143 long before such a write would."""
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_IN_WRITES, str(few_people), str(tmp_path), str(marker),
                             str(write_s)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=write_s / 2 + 20)
    kept = torch.load(RunDir(tmp_path, "sig").last(0), weights_only=True)["epoch"]
    lines = [x for x in err.splitlines() if "interrupted (SIGTERM)" in x]
    assert proc.returncode == 143 and len(lines) == 1, err[-2000:]
    assert f"last.pt (epoch {kept}) is intact" in lines[0] and kept == (1 if write_s < 1 else 0), lines[0]


ENDLESS_OPERATION = """
import torch
from src.errors import fail_cleanly
a = torch.randn(8000, 8000)
with fail_cleanly():
    print("ready", flush=True)
    torch.linalg.matrix_power(a, 2**62)  # one call of 62 squarings (minutes): no bytecode runs meanwhile
"""


@pytest.mark.slow
def test_a_signal_during_an_endless_operation_ends_the_process_at_the_deadline():
    """Python runs a signal's handler only between bytecodes, so a signal during one long operation (a backward pass)
    waited for it to end; the wakeup watcher arms the deadline at once: the process ends with 130 and one line while
    the operation would still run for minutes."""
    proc = subprocess.Popen([sys.executable, "-c", ENDLESS_OPERATION], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=40)  # the operation alone lasts minutes (62 products of 8000x8000 matrices)
    assert proc.returncode == 130 and err.strip() == "interrupted (SIGINT); every output is replaced whole or not at " \
                                                      "all, so nothing was left half-written", err


RACE_AT_THE_DEADLINE = """
import sys, threading, time
from pathlib import Path
from src.errors import fail_cleanly, interruptible
from src.run.atomic import save_text

path, described, replaced = Path(sys.argv[1]), threading.Event(), threading.Event()

def describe(name):
    kept = path.read_text()
    described.set()
    replaced.wait(3)  # a writer that was about to replace the file has every chance to
    return f"interrupted ({name}): the file keeps {kept}"

def writer():
    described.wait()
    save_text("new", path)
    replaced.set()
    time.sleep(60)  # the fold still waits for its writes: only the deadline ends the process

path.write_text("old")
thread = threading.Thread(target=writer)
thread.start()
with fail_cleanly(), interruptible(describe):
    try:
        print("ready", flush=True)
        time.sleep(60)
    finally:
        thread.join()  # as a fold waits for its writes: they wait for the line, so the deadline makes it
"""


def test_no_file_is_replaced_between_the_deadlines_line_and_the_end(tmp_path):
    """A signal while a fold waits for its writes: the deadline says what the disk keeps, then ends the process; a
    writer thread that replaces the file right after the line was made must not make the line false."""
    path = tmp_path / "last.txt"
    proc = subprocess.Popen([sys.executable, "-c", RACE_AT_THE_DEADLINE, str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and f"the file keeps {path.read_text()}" in err, (err, path.read_text())
