"""src/run/atomic.py: atomic writes, full disks and the temp files of killed writers."""
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import train
from src.errors import FileSystemError
from src.run import atomic
from src.run.atomic import save_torch
from src.run.rundir import RunDir
from tests.helpers import TINY, cli


def test_crash_during_checkpoint_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_torch({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_halfway(data, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "write_bytes", dies_halfway)
    with pytest.raises(FileSystemError, match=r"cannot write .*last\.pt \(disk full\)"):  # one line, not a traceback
        save_torch({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_atomic_writes_fsync_and_report_a_full_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    atomic.save_text("one", tmp_path / "a.txt")
    assert len(synced) == 2  # the file, then its folder

    def full(data, tmp):
        with open(tmp, "wb") as f:
            f.write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(atomic.NoSpace, match=f"no space left on device while writing {tmp_path / 'last.pt'}; no "):
        atomic.save_torch({"w": torch.ones(2)}, tmp_path / "last.pt")
    monkeypatch.undo()
    atomic.save_torch({"w": torch.ones(2)}, tmp_path / "last.pt")
    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(atomic.NoSpace, match="the previous last.pt is intact"):
        atomic.save_torch({"w": torch.zeros(2)}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "last.pt"]
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["w"], torch.ones(2))


@pytest.mark.slow
def test_stale_temp_files_of_a_killed_writer_are_removed_on_resume(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = RunDir(logs, name).fold(0) / f".last.pt.{dead}.tmp"
    live = RunDir(logs, name).fold(0) / f".best_f1.pt.{os.getpid()}.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--resume",
               capsys=capsys)[0] == 0
    assert not stale.exists() and live.exists()  # only the dead writer's file goes


def test_files_written_together_are_all_old_or_all_new(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "b.yaml"
    a.write_text("old a")
    b.write_text("old b")

    def broken(tmp):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(FileSystemError, match="cannot write .*b.yaml"):
        atomic.replace_together({a: atomic.text_writer("new a"), b: broken})
    assert (a.read_text(), b.read_text()) == ("old a", "old b") and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.csv", "b.yaml"]
    atomic.replace_together({a: atomic.text_writer("new a"), b: atomic.text_writer("new b")})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_the_moves_of_a_writer_killed_among_them_are_completed(tmp_path):
    dead = 2**22 + 4321  # above pid_max: no process has it
    a, b = tmp_path / "a.csv", tmp_path / "b.yaml"
    a.write_text("new a")  # moved before the kill
    b.write_text("old b")
    tmp_b = tmp_path / f".b.yaml.{dead}.tmp"
    tmp_b.write_text("new b")
    (tmp_path / f".a.csv.{dead}.moves").write_text(json.dumps([[str(tmp_path / f".a.csv.{dead}.tmp"), str(a)],
                                                                [str(tmp_b), str(b)]]))
    (tmp_path / f".c.csv.{dead}.tmp").write_text("half")  # killed mid-write, no journal: just removed
    atomic.remove_stale_tmp(tmp_path)
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.yaml"]


def test_a_read_only_place_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.os, "replace", read_only)
    with pytest.raises(FileSystemError) as caught:
        atomic.save_text("x", tmp_path / "f.txt")
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'f.txt'} (Read-only file system)")
    assert not list(tmp_path.iterdir())


def test_a_read_only_place_that_refuses_even_the_cleanup_is_still_one_line(tmp_path, monkeypatch):
    """On a read-only disk the temp file is never made, and unlinking it fails too (EROFS, not ENOENT): that must
    not hide the clean error."""
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(atomic.Path, "unlink", refuse)
    with pytest.raises(FileSystemError, match=f"cannot write {tmp_path / 'f.txt'}"):
        atomic.replace_with(tmp_path / "f.txt", refuse)
    with pytest.raises(FileSystemError, match="cannot write"):
        atomic.replace_together({tmp_path / "a": refuse, tmp_path / "b": refuse})


def test_a_file_where_a_folder_is_expected_is_named_as_such(tmp_path):
    (tmp_path / "logs").write_text("a file")
    for folder in (tmp_path / "logs", tmp_path / "logs" / "deeper"):
        with pytest.raises(FileSystemError) as caught:
            atomic.check_writable(folder)
        assert "expected a folder, but" in str(caught.value) and "is a file; choose another" in str(caught.value)
        assert "writable" not in str(caught.value)  # no permission would help


def test_train_with_log_dir_a_file_is_one_line_before_the_data_is_read(tmp_path, capsys):
    import train
    from tests.helpers import cli, one_line

    (tmp_path / "logs").write_text("a file")
    code, err = cli(train.main, "--data_dir", tmp_path / "no-data", "--log_dir", tmp_path / "logs", "--name", "r",
                    capsys=capsys)
    assert code == 1 and "logs: expected a folder, but it is a file" in one_line(err)
