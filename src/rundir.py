"""The run folder: every path of a run, the checkpoint kinds, and the one rule for claiming a name.

Nothing else spells a file name of a run. Layout (README "What goes where in logs/"):

    <log_dir>/<name>/config.yaml  train.log  metrics.csv  cv.json  tb/  pseudo_labels.csv (+ .yaml)
                     fold<k>/last.pt  best_f1.pt  best_loss.pt  best_acc.pt  oof.csv  confusion.png
                     submission.csv  eval_probs.csv  eval_preview.png  inference.yaml   (written by infer)

    python -m src.rundir latest [LOG_DIR]     prints the most recently written run's name (for shell scripts)
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

# checkpoint kind -> the validation metric whose best epoch it keeps (last: every epoch, plus resume state)
CHECKPOINT_KINDS = ("best_f1", "best_loss", "best_acc", "last")
BEST_BY_METRIC = {"val_f1": "best_f1", "val_loss": "best_loss", "val_acc": "best_acc"}

CONFIG, TRAIN_LOG, METRICS, CV, TENSORBOARD = "config.yaml", "train.log", "metrics.csv", "cv.json", "tb"
PSEUDO_LABELS, PSEUDO_SETTINGS = "pseudo_labels.csv", "pseudo_labels.yaml"
OOF, CONFUSION = "oof.csv", "confusion.png"
SUBMISSION, EVAL_PROBS, EVAL_PREVIEW, INFERENCE_SETTINGS = ("submission.csv", "eval_probs.csv", "eval_preview.png",
                                                            "inference.yaml")


class RunExists(RuntimeError):
    pass


class RunDir:
    """Paths of the run `name` under `log_dir`."""

    def __init__(self, log_dir, name: str):
        self.log_dir, self.name = Path(log_dir), name
        self.root = self.log_dir / name

    def __repr__(self):
        return f"RunDir({str(self.root)!r})"

    config = property(lambda self: self.root / CONFIG)
    train_log = property(lambda self: self.root / TRAIN_LOG)
    metrics = property(lambda self: self.root / METRICS)
    cv = property(lambda self: self.root / CV)
    tensorboard = property(lambda self: self.root / TENSORBOARD)
    pseudo_labels = property(lambda self: self.root / PSEUDO_LABELS)
    pseudo_settings = property(lambda self: self.root / PSEUDO_SETTINGS)
    submission = property(lambda self: self.root / SUBMISSION)

    def fold(self, k: int) -> Path:
        return self.root / f"fold{k}"

    def checkpoint(self, k: int, kind: str) -> Path:
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind {kind!r}; choose one of: {', '.join(CHECKPOINT_KINDS)}")
        return self.fold(k) / f"{kind}.pt"

    def last(self, k: int) -> Path:
        return self.checkpoint(k, "last")

    def oof(self, k: int) -> Path:
        return self.fold(k) / OOF

    def confusion(self, k: int) -> Path:
        return self.fold(k) / CONFUSION

    def folds(self) -> list[int]:
        """Indices of the fold folders present, in order."""
        found = [p.name[4:] for p in self.root.glob("fold*") if p.is_dir()]
        return sorted(int(k) for k in found if k.isdigit())

    @property
    def exists(self) -> bool:
        """A run is a folder holding config.yaml."""
        return self.config.is_file()

    def claim(self, resume: bool, overwrite: bool) -> str:
        """The one rule for a run name: 'new' when free; an existing run is continued with resume
        ('resumed'), replaced with overwrite ('replaced'), and refused otherwise."""
        if self.exists:
            if overwrite:
                shutil.rmtree(self.root)
                self.root.mkdir(parents=True)
                return "replaced"
            if not resume:
                raise RunExists(f"{self.root} already exists; use --resume to continue it or --overwrite to "
                                f"replace it")
            return "resumed"
        self.root.mkdir(parents=True, exist_ok=True)
        return "new"


def prediction_files(submission: Path) -> dict[str, Path]:
    """What infer writes: the submission and, beside it, probabilities, a preview and the settings used."""
    folder = submission.parent
    return dict(submission=submission, probs=folder / EVAL_PROBS, preview=folder / EVAL_PREVIEW,
                settings=folder / INFERENCE_SETTINGS)


def latest(log_dir) -> str | None:
    """The run whose config.yaml was written last, or None."""
    configs = sorted(Path(log_dir).glob(f"*/{CONFIG}"), key=lambda p: p.stat().st_mtime)
    return configs[-1].parent.name if configs else None


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] != "latest":
        raise SystemExit(__doc__)
    name = latest(sys.argv[2] if len(sys.argv) == 3 else "logs")
    if name is None:
        raise SystemExit("error: no run found; set RUN=name")
    print(name)
