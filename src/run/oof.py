"""A fold's out-of-fold predictions, oof.csv: the one place that builds its rows and the one reader of them, for
the run's records (cv.json, the console's confusion matrix), its trackers, the decision of a run ensemble
(src/predict/offsets.py) and insight."""
from __future__ import annotations

import numpy as np
import pandas as pd

from src.labels import PROB_COLUMNS
from src.predictions import Predictions
from src.run.rundir import RunDir

OOF_COLUMNS = ["path", "label", "fold", "pred", *PROB_COLUMNS]
AGE = "age"  # the person's true age, beside a number age head's age in years


def oof_rows(k: int, paths, labels, predictions: Predictions, ages: np.ndarray | None = None) -> pd.DataFrame:
    """oof.csv's rows of fold k: path, label, fold, pred (the argmax), then the predictions' table (p0..p17, and the
    age in years of a number age head, beside the person's true `age`)."""
    df = pd.DataFrame({"path": np.asarray(paths), "label": np.asarray(labels), "fold": k,
                       "pred": predictions.probs.argmax(1)})
    df = pd.concat([df, predictions.table()], axis=1)
    return df if predictions.years is None else df.assign(**{AGE: np.asarray(ages)})


def full_run_note(teachers: list) -> str:
    """What stands for the CV of a --fold full run, which has no out-of-fold rows."""
    source = f" (its teachers {', '.join(teachers)})" if teachers else ""
    return f"--fold full: one model on every person, no CV; its honest CV is the K-fold run of the same recipe{source}"


def read_oof(run: RunDir, folds=None, complete: bool = False) -> pd.DataFrame | None:
    """The oof.csv rows of `folds` (default: every fold folder present) that have one, in that order; may be empty.
    With `complete`: None unless every one of `folds` has its oof.csv."""
    folds = run.folds() if folds is None else list(folds)
    parts = [pd.read_csv(run.oof(k)) for k in folds if run.oof(k).is_file()]
    if complete and len(parts) < len(folds):
        return None
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OOF_COLUMNS)
