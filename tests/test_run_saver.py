"""src/run/saver.py: a kill between any two of a fold's writes leaves a fold that resumes, and the resumed fold ends
with the records of a fold never killed (its metrics rows, oof.csv, best_* epochs and last.pt)."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from src.engine import trainer
from src.run import atomic
from src.run.rundir import RunDir
from tests.helpers import tiny_cfg


class Killed(BaseException):
    """A simulated SIGKILL: raised in place of a write, before its file is replaced; nothing in src catches it."""


def writes_seen(monkeypatch, kill_at: int | None = None) -> list[list[Path]]:
    """Every atomic write from now on, as the paths it replaces; with `kill_at`, write number kill_at (from 0)
    raises Killed instead, and the file stays as it was."""
    real, seen = atomic.replace_together, []

    def replace_together(writes: dict):
        if len(seen) == kill_at:
            raise Killed([Path(p) for p in writes])
        seen.append([Path(p) for p in writes])
        return real(writes)

    monkeypatch.setattr(atomic, "replace_together", replace_together)
    return seen


def fold_records(run: RunDir) -> dict:
    """What a finished fold 0 leaves, without the wall-clock time of its epochs."""
    saved = {kind: torch.load(run.checkpoint(0, kind), weights_only=True) for kind in ("best_f1", "best_loss",
                                                                                       "best_acc", "last")}
    return dict(rows=pd.read_csv(run.fold_metrics(0)).drop(columns="time_s"),
                run_rows=pd.read_csv(run.metrics).drop(columns="time_s"), oof=pd.read_csv(run.oof(0)),
                epochs={kind: state["epoch"] for kind, state in saved.items()}, finished=saved["last"]["finished"])


def assert_same_records(got: dict, want: dict, where: str):
    for key in ("rows", "run_rows", "oof"):
        pd.testing.assert_frame_equal(got[key], want[key], check_exact=False, atol=1e-5, obj=f"{where}: {key}")
    assert got["epochs"] == want["epochs"] and got["finished"] and want["finished"], where


def test_a_kill_between_any_two_writes_of_a_fold_leaves_a_fold_that_resumes(few_people, tmp_path, monkeypatch):
    """Kills at each write of the fold's second epoch (oof_from last: it writes oof.csv and confusion.png too); each
    killed fold resumes from the first epoch's last.pt."""
    settings = dict(data_dir=few_people, log_dir=tmp_path, fold=0, epochs=2, deterministic="true", oof_from="last")
    seen = writes_seen(monkeypatch)
    trainer.train(tiny_cfg(name="straight", **settings))
    straight = RunDir(tmp_path, "straight")
    want = fold_records(straight)
    assert list(want["rows"]["epoch"]) == [0, 1]
    first_last = seen.index([straight.last(0)])
    assert seen[-1] == [straight.cv]  # the run's, once the fold ended
    second_last = len(seen) - 1 - seen[::-1].index([straight.last(0)])  # after it, only the run's writes
    epoch_1 = range(first_last + 1, second_last + 1)
    assert {"oof.csv", "confusion.png", "metrics.csv", "last.pt"} <= {p.name for i in epoch_1 for p in seen[i]}, seen
    for n in epoch_1:
        name = f"kill{n}"
        writes_seen(monkeypatch, kill_at=n)
        with pytest.raises(Killed):
            trainer.train(tiny_cfg(name=name, **settings))
        assert torch.load(RunDir(tmp_path, name).last(0), weights_only=True)["epoch"] == 0
        monkeypatch.undo()  # the writes go through again
        trainer.train(tiny_cfg(name=name, resume="true", **settings))
        assert_same_records(fold_records(RunDir(tmp_path, name)), want, f"killed at write {n} {seen[n]}")


@pytest.mark.parametrize("oof_from", ["best_f1", "last"])
def test_a_fold_killed_before_an_epochs_last_pt_and_resumed_with_fewer_epochs_agrees_on_one_epoch(
        few_people, tmp_path, monkeypatch, oof_from):
    """Killed at epoch 1's last.pt, after its best_*.pt (and oof.csv) were written, then resumed with --epochs 1: the
    fold ends at its saved epoch 0 with every file of epoch 0, as a fold trained one epoch would."""
    settings = dict(data_dir=few_people, log_dir=tmp_path, fold=0, deterministic="true", oof_from=oof_from,
                    batch_size=4)
    trainer.train(tiny_cfg(name="one", epochs=1, **settings))
    want = fold_records(RunDir(tmp_path, "one"))
    seen = writes_seen(monkeypatch)
    trainer.train(tiny_cfg(name="two", epochs=2, **settings))
    lasts = [i for i, paths in enumerate(seen) if paths[0].name == "last.pt"]
    epoch_1 = [p.name for paths in seen[lasts[0] + 1:lasts[1]] for p in paths]
    assert "best_f1.pt" in epoch_1, epoch_1  # epoch 1 improved its F1: the case at hand
    monkeypatch.undo()
    writes_seen(monkeypatch, kill_at=lasts[1])
    with pytest.raises(Killed):
        trainer.train(tiny_cfg(name="killed", epochs=2, **settings))
    run = RunDir(tmp_path, "killed")
    assert torch.load(run.checkpoint(0, "best_f1"), weights_only=True)["epoch"] == 1
    monkeypatch.undo()
    trainer.train(tiny_cfg(name="killed", epochs=1, resume="true", **settings))
    assert_same_records(fold_records(run), want, f"killed at epoch 1's last.pt, resumed with 1 epoch ({oof_from})")
    assert json.loads(run.cv.read_text())["cv_f1"] == json.loads(RunDir(tmp_path, "one").cv.read_text())["cv_f1"]
