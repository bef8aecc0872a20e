"""A fold's out-of-fold predictions, oof.csv: the one place that builds its rows and the one reader of them, for
the run's records (cv.json, the console's confusion matrix), its trackers, the decision of a run ensemble
(src/predict/offsets.py) and insight."""
from __future__ import annotations

import numpy as np
import pandas as pd

from src.labels import PROB_COLUMNS
from src.run.rundir import RunDir

OOF_COLUMNS = ["path", "label", "fold", "pred", *PROB_COLUMNS]
YEARS, AGE = "years", "age"  # a number age head's columns: its age in years, and the person's true age


def oof_rows(k: int, paths, labels, probs: np.ndarray, years: np.ndarray | None = None,
             ages: np.ndarray | None = None) -> pd.DataFrame:
    """oof.csv's rows of fold k: path, label, fold, pred (the argmax), p0..p17; and for a number age head `years`
    (its age) and `age` (the true one, as corrected)."""
    df = pd.DataFrame({"path": np.asarray(paths), "label": np.asarray(labels), "fold": k, "pred": probs.argmax(1)})
    df = pd.concat([df, pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    return df if years is None else df.assign(**{YEARS: np.asarray(years), AGE: np.asarray(ages)})


def read_oof(run: RunDir, folds=None, complete: bool = False) -> pd.DataFrame | None:
    """The oof.csv rows of `folds` (default: every fold folder present) that have one, in that order; may be empty.
    With `complete`: None unless every one of `folds` has its oof.csv."""
    folds = run.folds() if folds is None else list(folds)
    parts = [pd.read_csv(run.oof(k)) for k in folds if run.oof(k).is_file()]
    if complete and len(parts) < len(folds):
        return None
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=OOF_COLUMNS)


def oof_years(oof: pd.DataFrame) -> np.ndarray | None:
    """The rows' ages in years of a number age head, or None where a row has none (a band head's run)."""
    if YEARS not in oof or oof[YEARS].isna().any():
        return None
    return oof[YEARS].to_numpy(dtype=np.float64)
