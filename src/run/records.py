"""What a training run records besides a fold's own files (src/run/saver.py writes those: last.pt, best_*.pt,
metrics.csv rows, oof.csv): train.log and console lines, TensorBoard, and the run-level results it is handed
(src/engine/evaluation.py computes them): cv.json, decision.json, people.npz and the out-of-fold confusion.png.
Paths come from RunDir. With --tracker (or a run tracked before), each write is followed by a sync that sends the
trackers what the folder holds and they lack (src/run/tracking.py).

The console gets one line per epoch; the epoch's confusion matrix goes to train.log and TensorBoard, and the
console sees the best epoch's matrix once, when the fold ends."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from src.config import policy
from src.config.schema import TrainConfig
from src.labels import NUM_CLASSES
from src.metrics import confusion, confusion_text
from src.run.atomic import save_npz, save_text
from src.run.figures import confusion_figure, save_png
from src.run.logging import CONSOLE_ONLY, FILE_ONLY, log
from src.run import tracking
from src.run.oof import read_oof
from src.run.rundir import RunDir


class RunRecords:
    """Rank 0's records of one training run: per epoch (told by the fold's FoldSaver) the console line, then, once its
    files are written, TensorBoard scalars and confusion matrix; per fold the console's confusion matrix of its
    oof.csv; the run's results.

    Each fold's own files hold its state; the results are rebuilt from them under the run's lock, so processes
    training different folds side by side never overwrite each other's records."""

    def __init__(self, run: RunDir, trackers: list[tracking.Record] = ()):
        from torch.utils.tensorboard import SummaryWriter  # imported here: inference and benchmarks skip it

        self.run = run
        self.writer = SummaryWriter(str(run.tensorboard))
        self.tracking = tracking.start(trackers, run)
        self.fold: int | None = None  # the fold this process trains now (its lock is ours)
        self.full = False  # --fold full: its one model validates nothing

    def track(self, wait: bool = False):
        """Ask the trackers' thread to send what the run folder holds and they lack (an epoch once its last.pt is
        saved); with `wait`, until it is sent or hurry() is called."""
        self.tracking.request(self.fold, wait)

    def hurry(self):
        """A block in which the training loop needs the thread that may wait for the trackers (src/run/saver.py,
        while it hands over an epoch's writes): that thread waits no longer."""
        return self.tracking.hurry()

    def start_fold(self, k: int):
        """Fold k (its lock is ours) starts or resumes here."""
        self.fold = k
        self.track()

    def epoch_line(self, row: dict, cm: np.ndarray | None):
        """One epoch's line on the console and in train.log (with its confusion matrix there); cm is None for an
        epoch not validated (val_every), whose val_* values are NaN."""
        head = "fold %d epoch %d  lr %.2e  train_loss %.4f  " % (row["fold"], row["epoch"], row["lr"], row["train_loss"])
        if "train_kd_loss" in row:
            head += "(labels %.4f, teachers' KL %.4f)  " % (row["train_sup_loss"], row["train_kd_loss"])
        if cm is None:
            log.info("%snot validated (%s)  %.0fs", head, "--fold full" if self.full else "val_every", row["time_s"])
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
        self.track(wait=True)

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
        self.full = cfg.fold == "full"
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
            log.info("drop_ages %s: %d images of %d people left out of training%s", cfg.drop_ages, left_out.sum(),
                     table.loc[left_out, "person_id"].nunique(), "" if self.full else " (they still validate)")

    def write_results(self, cfg: TrainConfig, results) -> dict:
        """The run's results (src/engine/evaluation.py's RunResults, or None before any out-of-fold row) as files:
        people.npz, decision.json, the out-of-fold confusion.png and cv.json, in that order (the caller holds the
        run's lock); then their lines, the trackers and TensorBoard's HParams. Returns cv.json's contents."""
        self.fold = None
        if results is None:
            self.track()
            return {}
        run, cv = self.run, results.cv
        if results.people is not None:
            save_npz(results.people, run.people)
        if results.decision is not None:
            save_text(json.dumps(results.decision, indent=2), run.decision)
        save_png(confusion_figure(results.confusion, f"{run.name}: out-of-fold rows of {results.folds} fold(s), CV "
                                                     f"macro-F1 {cv['cv_f1']:.4f}"), run.oof_confusion)
        save_text(json.dumps(cv, indent=2), run.cv)
        self.track()
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
