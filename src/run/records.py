"""What a training run records besides a fold's own files (src/run/saver.py writes those: last.pt, best_*.pt,
metrics.csv rows, oof.csv): train.log and console lines, TensorBoard, and the run-level cv.json, decision.json and
people.npz. Paths come from RunDir. With --tracker (or a run tracked before), each write is followed by a sync that
sends the trackers what the folder holds and they lack (src/run/tracking.py).

The console gets one line per epoch; the epoch's confusion matrix goes to train.log and TensorBoard, and the
console sees the best epoch's matrix once, when the fold ends."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src import decision, people
from src.config import policy
from src.config.schema import TrainConfig
from src.labels import NUM_CLASSES, PROB_COLUMNS
from src.metrics import confusion, confusion_text, evaluate, scores
from src.run.atomic import save_npz, save_text
from src.run.figures import confusion_figure, save_png
from src.run.logging import CONSOLE_ONLY, FILE_ONLY, log
from src.run import tracking
from src.run.oof import AGE, oof_years, read_oof
from src.run.rundir import RunDir


class RunRecords:
    """Rank 0's records of one training run: per epoch (told by the fold's FoldSaver) the console line, then, once its
    files are written, TensorBoard scalars and confusion matrix; per fold the console's confusion matrix of its
    oof.csv; the run's cv.json.

    Each fold's own files hold its state; cv.json is rebuilt from them under the run's lock, so processes training
    different folds side by side never overwrite each other's records."""

    def __init__(self, run: RunDir, trackers: list[tracking.Record] = ()):
        from torch.utils.tensorboard import SummaryWriter  # imported here: inference and benchmarks skip it

        self.run = run
        self.writer = SummaryWriter(str(run.tensorboard))
        self.tracking = tracking.start(trackers, run)
        self.fold: int | None = None  # the fold this process trains now (its lock is ours)

    def track(self):
        """Send the trackers what the run folder holds and they lack (an epoch once its last.pt is saved)."""
        self.tracking.sync(self.fold)

    def start_fold(self, k: int):
        """Fold k (its lock is ours) starts or resumes here."""
        self.fold = k
        self.track()

    def epoch_line(self, row: dict, cm: np.ndarray | None):
        """One epoch's line on the console and in train.log (with its confusion matrix there); cm is None for an
        epoch not validated (val_every), whose val_* values are NaN."""
        head = "fold %d epoch %d  lr %.2e  train_loss %.4f  " % (row["fold"], row["epoch"], row["lr"], row["train_loss"])
        if cm is None:
            log.info("%snot validated (val_every)  %.0fs", head, row["time_s"])
            return
        log.info("%sval_loss %.4f  val_acc %.4f  val_f1 %.4f  (mask %.3f gender %.3f age %.3f)  %.0fs", head,
                 row["val_loss"], row["val_acc"], row["val_f1"], row["val_f1_mask"], row["val_f1_gender"],
                 row["val_f1_age"], row["time_s"])
        log.info("confusion matrix (rows true, columns predicted):\n%s", confusion_text(cm), extra=FILE_ONLY)

    def epoch_saved(self, row: dict, cm: np.ndarray | None):
        """One epoch whose files are written (its last.pt last): TensorBoard's scalars and confusion matrix, and the
        trackers, which then send this very epoch."""
        k, epoch = row["fold"], row["epoch"]
        for key, value in row.items():
            if key not in ("fold", "epoch", "best_f1") and not np.isnan(value):
                self.writer.add_scalar(f"fold{k}/{key}", value, epoch)
        if cm is not None:
            self.writer.add_figure(f"fold{k}/confusion", confusion_figure(cm, f"fold {k} epoch {epoch}"), epoch)
        self.writer.flush()
        self.track()

    def end_fold(self, k: int):
        """The confusion matrix of fold k's oof.csv, once on the console; the trackers get the fold's last epoch."""
        oof = read_oof(self.run, [k])
        if not oof.empty:
            log.info("fold %d: confusion matrix of its out-of-fold rows (rows true, columns predicted):\n%s", k,
                     confusion_text(confusion(oof["label"], oof["pred"])), extra=CONSOLE_ONLY)
        self.track()

    def hparams(self, settings: dict, cv: dict):
        """TensorBoard's HParams tab: the run's settings against its CV scores, for comparing runs there."""
        values = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
        self.writer.add_hparams(values, {f"hparams/{k}": v for k, v in cv.items() if isinstance(v, float)},
                                run_name="hparams")

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        """The records close however training ended; the trackers get a last sync unless a signal stopped it."""
        self.writer.close()
        self.tracking.close(self.fold, send=kind is None or issubclass(kind, Exception))

    def started(self, cfg: TrainConfig, dist, table: pd.DataFrame, left_out: np.ndarray, data_warnings: list[str]):
        """The run's first lines: where and what (the settings, what differs from the defaults and recipes), the
        warnings of its settings and data, and the data it trains on."""
        log.info("run %s  commit %s  device %s  world %d%s\n%s", self.run.root, policy.git_commit()[0], dist.device,
                 dist.world, f"  backend {dist.backend}" if dist.backend else "", policy.dump(cfg, TrainConfig))
        log.info("%s", "\n".join(policy.changes(cfg, cfg.recipes)))
        for warning in policy.pointless(cfg):
            log.warning("warning: %s", warning)
        for warning in data_warnings:  # the console showed them while the data loaded
            log.warning("warning: %s", warning, extra=FILE_ONLY)
        if dist.device.type != "cuda" and cfg.amp != "none":
            log.info("amp=%s applies on CUDA only; this run uses fp32 on %s", cfg.amp, dist.device)
        log.info("data: %d images of %d people; class counts (training labels) %s", len(table),
                 table["person_id"].nunique(), np.bincount(table["train_label"], minlength=NUM_CLASSES).tolist())
        if left_out.any():
            log.info("drop_ages %s: %d images of %d people left out of training (they still validate)", cfg.drop_ages,
                     left_out.sum(), table.loc[left_out, "person_id"].nunique())

    def write_cv(self, cfg: TrainConfig, photo_people: PhotoPeople | None = None) -> dict:
        """cv.json (and decision.json, people.npz) once the configured folds have run; its lines; TensorBoard's
        HParams."""
        with self.run.lock():
            cv = write_cv(self.run, cfg.n_folds, photo_people)
        self.fold = None
        self.track()
        if not cv:
            return cv
        log.info("CV macro-F1 %.4f over %d out-of-fold images; per fold %s", cv["cv_f1"], cv["oof_rows"],
                 {k: round(v, 4) for k, v in cv["fold_f1"].items()})
        if "cv_f1_tuned" in cv:
            log.info("CV macro-F1 with the tuned decision %.4f (cross-fitted: each fold decided by offsets%s fitted "
                     "on the others; argmax %.4f); in %s", cv["cv_f1_tuned"],
                     " and age cut points" if "cv_age_mae" in cv else "", cv["cv_f1"], self.run.decision)
        if "cv_age_mae" in cv:
            log.info("age head %s: %.2f years off on average, out of fold", cfg.age_head, cv["cv_age_mae"])
        self.hparams(policy.settings(cfg, TrainConfig), cv)
        return cv


def write_cv(run: RunDir, n_folds: int, photo_people: PhotoPeople | None = None) -> dict:
    """cv.json: macro-F1 of each fold's OOF rows and of all OOF rows together (argmax). Once every fold has its
    OOF rows, also the tuned decision: offsets fitted on all of them (decision.json), and the tuned CV, cross-fitted
    (each fold decided by offsets fitted on the other folds), with its per-task scores; with `photo_people`, the
    same per person (write_people)."""
    oof = read_oof(run, range(n_folds))
    if oof.empty:
        return {}
    probs, labels = oof[PROB_COLUMNS].to_numpy(), oof["label"].to_numpy()
    years = oof_years(oof)
    whole = evaluate(labels, probs)
    folds = {int(k): evaluate(g["label"], g[PROB_COLUMNS].to_numpy())["f1"] for k, g in oof.groupby("fold")}
    cv = dict(cv_f1=whole["f1"], fold_f1=folds, **{f"cv_{k}": v for k, v in whole.items() if k != "f1"},
              oof_rows=len(oof))
    if years is not None:  # a number age head: how many years off it is, out of fold
        cv["cv_age_mae"] = float(np.abs(years - oof[AGE].to_numpy()).mean())
    if oof["fold"].nunique() == n_folds:  # every fold has its rows
        tuning = decision.tune(probs, labels, oof["fold"].to_numpy(), years=years)
        tuned = scores(labels, tuning.crossed)
        cv |= {"cv_f1_tuned": tuned["f1"], **{f"cv_{k}_tuned": v for k, v in tuned.items() if k != "f1"}}
        chosen = dict(offsets=rounded(tuning.offsets), oof_rows=len(oof), cv_f1_tuned=tuned["f1"],
                      cv_f1_argmax=whole["f1"])
        if tuning.cuts is not None:
            chosen["age_cuts"] = list(tuning.cuts)
        missing = [p for p in oof["path"] if photo_people is not None and p not in photo_people.person_of]
        if missing:  # rows of data at another place (a resume with another data_dir)
            log.info("grouped CV: skipped, %d out-of-fold rows are not photos of this data (%s)", len(missing),
                     missing[0])
        elif photo_people is not None:
            grouped = write_people(run, oof, photo_people)
            cv |= grouped.record() | {f"cv_{k}_grouped_tuned": v for k, v in
                                      scores(labels, grouped.crossed).items() if k != "f1"}
            chosen |= dict(person_offsets=rounded(grouped.offsets), cv_f1_grouped_tuned=grouped.cv_tuned)
        save_text(json.dumps(chosen, indent=2), run.decision)
    save_png(confusion_figure(confusion(labels, oof["pred"]), f"{run.name}: out-of-fold rows of {oof['fold'].nunique()} "
                              f"fold(s), CV macro-F1 {whole['f1']:.4f}"), run.oof_confusion)
    save_text(json.dumps(cv, indent=2), run.cv)
    return cv


def rounded(offsets: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in offsets]


@dataclass(frozen=True)
class PhotoPeople:
    """What the grouped CV needs of the training photos that this layer cannot read itself: their appearance
    features (`appearance(paths)`) and their known people, which fit each fold's person metric on the other folds
    and score the clustering afterwards; the clustering never sees them."""
    appearance: Callable[[list[str]], np.ndarray]
    person_of: dict[str, str]


def write_people(run: RunDir, oof: pd.DataFrame, photo_people: PhotoPeople) -> people.PeopleCV:
    """The grouped CV of the out-of-fold rows, and people.npz: the person metric fitted on every training photo
    (infer groups eval with it) and each out-of-fold row's place under its fold's metric (run ensembles group their
    mean out-of-fold rows with it)."""
    paths = oof["path"].tolist()
    thumbs = photo_people.appearance(paths)
    ids = np.array([photo_people.person_of[p] for p in paths])
    folds = oof["fold"].to_numpy()
    embedded = people.oof_embedding(thumbs, ids, folds)
    grouped = people.people_cv(oof[PROB_COLUMNS].to_numpy(), oof["label"].to_numpy(), folds, embedded, ids)
    metric = people.PersonMetric.fit(thumbs, ids)
    save_npz(dict(paths=np.array(paths), embedded=embedded, matrix=metric.matrix, offset=metric.offset),
             run.people)
    log.info("grouped CV: %s; macro-F1 %.4f argmax, %.4f tuned (cross-fitted)",
             ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in grouped.clustering.items()),
             grouped.cv_argmax, grouped.cv_tuned)
    return grouped
