"""What a fold saves, in one place and in one order: the best_<metric>.pt files of the metrics that improved, the
out-of-fold rows of its oof_from epoch (oof.csv and confusion.png), its metrics.csv rows (and the run's metrics.csv
rebuilt from every fold's) and, last of each epoch, last.pt; and last.pt read back into the training objects.

The order keeps a kill safe. Each file is written atomically (src/run/atomic.py) and everything of epoch e is
written before last.pt of epoch e, so a fold killed between any two writes resumes from the previous last.pt, drops
the metrics rows of the epochs it runs again, and rewrites what follows. The writes of an epoch run on a thread while
the next epoch trains (src/run/background.py), in the same order; the fold's end waits for them. The file layout is
src/run/checkpoint.py's; the run's TensorBoard, console and trackers are RunRecords', told of each epoch by `records`:
its line at once, the rest once its last.pt is written."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from src.config.schema import BEST_BY_METRIC
from src.errors import CheckpointError
from src.metrics import confusion, evaluate
from src.predictions import Predictions
from src.run.atomic import save_csv
from src.run.background import BackgroundWrites, snapshot
from src.run.checkpoint import FOR_RESUME, FoldState, load_into, read, save_best, set_rng_state
from src.run.figures import confusion_figure, save_png
from src.run.logging import log
from src.run.oof import oof_rows
from src.run.rundir import RunDir

LOWER_IS_BETTER = ("val_loss",)


class Stateful(Protocol):
    """What last.pt saves of an object, and gives back to it."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict): ...


@dataclass
class FoldObjects:
    """A fold's live training objects: what last.pt holds."""
    model: torch.nn.Module  # the network (no DDP or compile wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: Stateful | None  # an LR scheduler
    step: Stateful  # the training step: its grad scaler and the optimizer steps taken (state_dict: scaler, steps)
    stopper: Stateful  # early stopping (its should_stop read by the fold's epochs)
    ema: Stateful | None = None  # the weight average (timm's ModelEmaV3), with cfg.ema
    kept: torch.nn.Module | None = None  # the weights the best_* files keep; None: the model's

    def kept_weights(self) -> dict:
        return (self.kept if self.kept is not None else self.model).state_dict()


@dataclass(frozen=True)
class Validated:
    """One validation pass over a fold's validation rows, in the order the pass returned them."""
    paths: np.ndarray  # each row's image
    labels: np.ndarray  # its true class
    predictions: Predictions  # its probabilities (and ages in years)
    metrics: dict  # the val_* values
    ages: np.ndarray | None = None  # the people's true ages


def saved_state(run: RunDir, k: int) -> FoldState | None:
    """Fold k's last.pt, or None where no epoch of it was saved yet."""
    return FoldState.load(run.last(k)) if run.last(k).is_file() else None


def rebuild_metrics(run: RunDir):
    """The run's metrics.csv from every fold's rows (under the run's lock: folds trained side by side)."""
    parts = [pd.read_csv(run.fold_metrics(k)) for k in run.folds() if run.fold_metrics(k).is_file()]
    if parts:
        save_csv(pd.concat(parts, ignore_index=True).sort_values(["fold", "epoch"]), run.metrics, float_format="%.6g")


class FoldSaver:
    """Fold k's files. Every rank restores (`resume`); only the process that `writes` (rank 0) writes, and tells
    `records` (the run's RunRecords, or None) of the fold's start, each epoch's row and the fold's end.

    `oof_from` (best_f1 or last) names the epoch whose validation rows become oof.csv."""

    def __init__(self, run: RunDir, k: int, objects: FoldObjects, *, oof_from: str, records=None, writes: bool):
        self.run, self.k, self.objects, self.oof_from = run, k, objects, oof_from
        self.records, self.writes = records, writes
        self.background = BackgroundWrites(f"fold {k} writes")
        self.best = {metric: (math.inf if metric in LOWER_IS_BETTER else -math.inf) for metric in BEST_BY_METRIC}
        self.rows: list[dict] = []  # the fold's metrics.csv rows

    def resume(self, state: FoldState | None, *, steps_per_epoch: int, network: str, rank: int, world: int) -> int:
        """Load last.pt's `state` (None: a fold not started) into the objects; returns the first epoch still to run.
        The rows of epochs that will run (again) are dropped, so a kill between writes never duplicates one.
        `network` names the settings' model for the error when the weights are another's."""
        start = 0
        if state is not None:
            start = self.restore(state, rank, world, steps_per_epoch, network)
            log.info("fold %d: resumed from %s after epoch %d", self.k, self.run.last(self.k), state.epoch)
        if self.writes:
            path = self.run.fold_metrics(self.k)
            rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
            self.rows = [r for r in rows if r["epoch"] < start]
            if self.records is not None:
                self.records.start_fold(self.k)
        return start

    def restore(self, state: FoldState, rank: int, world: int, steps_per_epoch: int, network: str) -> int:
        """last.pt's state into the objects (each rank takes its own RNG state); returns the epoch after it."""
        o = self.objects
        load_into(o.model, state.model, self.run.last(self.k), network)
        o.optimizer.load_state_dict(state.optimizer)
        if o.scheduler is not None:
            o.scheduler.load_state_dict(state.scheduler)
        o.stopper.load_state_dict(state.early_stopping)
        self.best = dict(state.best)
        rng = state.rng
        set_rng_state(rng[rank] if isinstance(rng, list) and len(rng) == world else rng[0] if isinstance(rng, list)
                      else rng)
        start = state.epoch + 1
        o.step.load_state_dict(dict(scaler=state.scaler, steps=start * steps_per_epoch))
        if o.ema is not None:
            o.ema.load_state_dict(state.ema)
        return start

    def improved(self, metrics: dict) -> dict[str, bool]:
        return {key: (metrics[key] < best) if key in LOWER_IS_BETTER else (metrics[key] > best)
                for key, best in self.best.items()}

    def save_epoch(self, epoch: int, values: dict, validated: Validated | None, *, last: bool, rngs: list):
        """Everything of a trained epoch, in the kill-safe order, on the writer thread (src/run/background.py): for a
        validated epoch the best_* files that improved and, for the oof_from epoch, oof.csv; then the metrics row
        (fold, epoch, `values`, best_f1); then last.pt (`last`: the fold ends here; `rngs`: every rank's RNG
        state); then the records. Here, before the thread starts: the copies it writes and the console's line."""
        if not self.writes:
            return
        self.check()
        o = self.objects
        improved, keep = self._improvements(validated, last) if validated is not None else ({}, False)
        row = dict(fold=self.k, epoch=epoch, **values, best_f1=improved.get("val_f1", False))
        self.rows.append(row)
        cm = confusion(validated.labels, validated.predictions.probs.argmax(1)) if validated is not None else None
        model = snapshot(o.model.state_dict())
        kept_is_model = o.kept is None or o.kept is o.model
        weights = (model if kept_is_model else snapshot(o.kept_weights())) if any(improved.values()) else None
        state = FoldState(model=model, optimizer=snapshot(o.optimizer.state_dict()),
                          scheduler=snapshot(o.scheduler.state_dict()) if o.scheduler is not None else None,
                          scaler=snapshot(o.step.state_dict()["scaler"]),
                          early_stopping=snapshot(o.stopper.state_dict()), best=dict(self.best), epoch=epoch,
                          rng=rngs if len(rngs) > 1 else rngs[0], finished=last,
                          ema=snapshot(o.ema.state_dict()) if o.ema is not None else None)
        rows = list(self.rows)
        if self.records is not None:
            self.records.epoch_line(row, cm)

        def write():
            self._keep(epoch, validated, improved, weights, cm, keep)
            self._record(rows)
            state.save(self.run.last(self.k))
            if self.records is not None:
                self.records.epoch_saved(row, cm)

        with self.hurry():  # the previous epoch's writes may wait for a tracker: not this loop
            self.background.submit(write)

    def finish_saved(self, state: FoldState, validated: Validated | None):
        """A fold resumed with no epochs left to run: its saved epoch, validated now (None: a fold without
        validation rows), becomes its last (the best_* files and oof.csv as if it had stopped there), then last.pt as
        it was, with the best values as they are now, marked finished."""
        if not self.writes:
            return
        if validated is not None:
            self._keep_saved(state, validated)
        self._record(self.rows)  # without the rows of epochs after the saved one
        state.best, state.finished = dict(self.best), True
        state.save(self.run.last(self.k))

    def _keep_saved(self, state: FoldState, validated: Validated):
        improved, keep = self._improvements(validated, True)
        for key in self.after(state.epoch):  # a kill between an epoch's best_*.pt and its last.pt: not this fold's
            log.info("fold %d: %s is of an epoch after the saved epoch %d (killed before its last.pt); rewritten from "
                     "epoch %d", self.k, self.run.checkpoint(self.k, BEST_BY_METRIC[key]).name, state.epoch,
                     state.epoch)
            improved[key], self.best[key] = True, validated.metrics[key]
            keep = keep or (key == "val_f1" and self.oof_from == "best_f1")  # oof.csv follows best_f1.pt
        weights = self.objects.kept_weights() if any(improved.values()) else None
        self._keep(state.epoch, validated, improved, weights, confusion(validated.labels, validated.predictions.probs.argmax(1)),
                   keep)

    def after(self, epoch: int) -> list[str]:
        """The metrics whose best_*.pt holds an epoch after `epoch` (or cannot be read)."""
        later = []
        for key, kind in BEST_BY_METRIC.items():
            path = self.run.checkpoint(self.k, kind)
            if path.is_file():
                try:
                    saved = int(read(path, FOR_RESUME, mmap=True)["epoch"])
                except (CheckpointError, KeyError, TypeError, ValueError):
                    saved = math.inf
                if saved > epoch:
                    later.append(key)
        return later

    def _improvements(self, validated: Validated, last: bool) -> tuple[dict[str, bool], bool]:
        """Which metrics a validated epoch improved (their best values updated), and whether its rows become
        oof.csv."""
        improved = self.improved(validated.metrics)
        for key in (key for key, better in improved.items() if better):
            self.best[key] = validated.metrics[key]
        return improved, improved["val_f1"] if self.oof_from == "best_f1" else last

    def _keep(self, epoch: int, validated: Validated | None, improved: dict[str, bool], weights: dict | None,
              cm: np.ndarray | None, keep: bool):
        """A validated epoch's best_* files (of `weights`) for the metrics it improved and, when `keep`, its rows as
        oof.csv and its confusion matrix as confusion.png."""
        for key in (key for key, better in improved.items() if better):
            save_best(self.run.checkpoint(self.k, BEST_BY_METRIC[key]), weights, epoch, validated.metrics, key)
        if keep:
            save_csv(oof_rows(self.k, validated.paths, validated.labels, validated.predictions, validated.ages),
                     self.run.oof(self.k), float_format="%.6g")
            f1 = evaluate(validated.labels, validated.predictions.probs)["f1"]
            save_png(confusion_figure(cm, f"fold {self.k} epoch {epoch} F1 {f1:.4f}"), self.run.confusion(self.k))

    def _record(self, rows: list[dict]):
        """The fold's metrics.csv rows, then the run's metrics.csv rebuilt from every fold's."""
        save_csv(pd.DataFrame(rows), self.run.fold_metrics(self.k), float_format="%.6g")
        with self.run.lock():
            rebuild_metrics(self.run)

    def check(self):
        """Raise the error of the previous epoch's writes, if they failed, without waiting for writes in flight."""
        if self.writes:
            self.background.check()

    def wait(self):
        """Wait for the writes in flight (the last epoch's sync with them: a fold's end may wait once); raise their
        error."""
        if self.writes:
            self.background.wait()

    def hurry(self):
        return self.records.hurry() if self.records is not None else contextlib.nullcontext()

    def end(self):
        """The fold ended (trained, stopped or skipped as finished by its resume): its writes are done."""
        self.wait()
        if self.records is not None:
            self.records.end_fold(self.k)
