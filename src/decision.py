"""Decisions for macro-F1: per-class offsets added to the log-probabilities before the argmax, fitted on
out-of-fold rows. Macro-F1 weighs each of the 18 classes alike, so a rare class's recall is worth as much as a
common one's; a plain argmax of calibrated probabilities does not maximise that.

train.py's offsets are the plug-in rule of Lipton, Elkan and Narayanaswamy (2014, "Thresholding classifiers to
maximize F1 score"): for calibrated scores the F1-best threshold is half the best F1 reached, so a class whose F1
is low should be decided at a lower probability. Each class's offset is the sum, over its task values (its mask
state, gender and age band), of -log F1 of that value on the out-of-fold argmax: dividing p by F1 / 2 is adding
-log F1, the log 2 being common to every class. Three numbers that matter here (the age bands' F1; mask and gender
are near 1) are measured on hundreds of rows each, where a search for the F1-best offsets (bench/decisions.py's
`fit_offsets`, coordinate ascent, compared there with this rule) followed the handful of people in each 60+ class
(bench/RESULTS.md, "Decisions"; the earlier searches: bench/notes/2026-12-02-decision-searches.md).
Cross-fitting (offsets fitted on the other folds, applied to the held-out one) keeps a tuned CV honest. It is
reported, not used as a gate: on out-of-fold rows with about 20 people of 60+ it can fall below the argmax CV
while the offsets still raise eval macro-F1 (bench/RESULTS.md, "Decisions")."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from src.labels import NUM_CLASSES, TASK_SIZES, decode_label


def terms_of_class() -> np.ndarray:
    """(18, 8): row c picks the terms of class c's mask, gender and age (terms 0-2 mask, 3-4 gender, 5-7 age)."""
    starts = np.cumsum((0,) + TASK_SIZES[:-1])
    classes = np.arange(NUM_CLASSES)
    table = np.zeros((NUM_CLASSES, sum(TASK_SIZES)))
    for start, value in zip(starts, decode_label(classes)):
        table[classes, start + value] = 1.0
    return table


TERMS_OF_CLASS = terms_of_class()
F1_FLOOR = 0.1  # a task value's F1 below this counts as this: its offset stays at most -log 0.1 = 2.3
MAX_OFFSET = 7.0  # a class's offset: three task terms of at most 2.3 (plug-in) or 2 (bench's GRID), never beyond this


def fast_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> float:
    """sklearn's macro-F1 over classes 0..n-1 with zero_division=0, from one bincount (the search calls it often)."""
    cm = np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)
    tp, support = np.diag(cm), cm.sum(1) + cm.sum(0)
    return float(np.where(support > 0, 2 * tp / np.maximum(support, 1), 0.0).mean())


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def decide(probs: np.ndarray, offsets: np.ndarray | None, years: np.ndarray | None = None,
           cuts=None) -> np.ndarray:
    """The class of each row: argmax of log p + offsets (a plain argmax without offsets); with a number age head's
    `years` and `cuts` (c1, c2), the age band is years >= c1 plus years >= c2, and mask and gender are the argmax of
    their probability (the age summed out) plus that band's offsets."""
    if years is None or cuts is None:
        return np.asarray(probs).argmax(1) if offsets is None else (log_probs(probs) + offsets).argmax(1)
    return per_band(probs, offsets)[np.arange(len(years)), bands(years, cuts)]


AGE_OF_CLASS = decode_label(np.arange(NUM_CLASSES))[2]
CUT_GRID = (np.arange(24.0, 36.01, 0.25), np.arange(48.0, 61.01, 0.25))  # where fit_cuts looks for c1 and c2


def bands(years: np.ndarray, cuts) -> np.ndarray:
    """The age band of each age in years: 0 below cuts[0], 1 below cuts[1], else 2."""
    years = np.asarray(years, dtype=np.float64)
    return (years >= cuts[0]).astype(np.int64) + (years >= cuts[1])


def per_band(probs: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """(rows, 3): each row's class for each age band: its mask and gender by log P(mask, gender) (the age summed out)
    plus the offsets of that band's classes."""
    mask_gender = log_probs(np.asarray(probs).reshape(len(probs), -1, TASK_SIZES[2]).sum(2))  # (rows, 6)
    columns = [np.flatnonzero(AGE_OF_CLASS == b) for b in range(3)]  # mask x gender in order, as mask_gender
    return np.stack([cols[(mask_gender + (0.0 if offsets is None else offsets[cols])).argmax(1)] for cols in columns],
                    1)


def fit_cuts(probs: np.ndarray, labels: np.ndarray, years: np.ndarray, offsets: np.ndarray | None) -> tuple:
    """The cut points (c1, c2) of CUT_GRID whose decisions reach the highest macro-F1 on these rows (the first such
    pair: the lowest c1, then the lowest c2)."""
    best_class, labels = per_band(probs, offsets), np.asarray(labels, dtype=np.int64)
    rows, years = np.arange(len(labels)), np.asarray(years, dtype=np.float64)
    best, chosen = -1.0, (float(CUT_GRID[0][0]), float(CUT_GRID[1][0]))
    above = [years >= c for c in CUT_GRID[1]]
    for c1 in CUT_GRID[0]:
        low = (years >= c1).astype(np.int64)
        for c2, high in zip(CUT_GRID[1], above):
            f1 = fast_macro_f1(labels, best_class[rows, low + high])
            if f1 > best:
                best, chosen = f1, (float(c1), float(c2))
    return chosen


def value_offsets(true: np.ndarray, pred: np.ndarray, size: int) -> np.ndarray:
    """-log F1 (floored at F1_FLOOR) of each of a task's `size` values, for predictions `pred` against `true`.
    A value no label holds gets 0: its F1 is not defined."""
    f1 = f1_score(true, pred, labels=np.arange(size), average=None, zero_division=0)
    return np.where(np.bincount(true, minlength=size) > 0, -np.log(np.maximum(f1, F1_FLOOR)), 0.0)


def plugin_offsets(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class offsets for the argmax of `probs` against `labels` (offsets_of)."""
    return offsets_of(np.asarray(probs).argmax(1), labels)


def offsets_of(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class offsets: TERMS_OF_CLASS @ (value_offsets of each task, for the classes `pred` against
    `labels`)."""
    values_true = decode_label(np.asarray(labels, dtype=np.int64))
    values_pred = decode_label(np.asarray(pred, dtype=np.int64))
    terms = [value_offsets(true, p, size) for true, p, size in zip(values_true, values_pred, TASK_SIZES)]
    return TERMS_OF_CLASS @ np.concatenate(terms)


def cross_fitted(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, fit=plugin_offsets,
                 years: np.ndarray | None = None) -> np.ndarray:
    """Each fold's rows decided with offsets `fit(probs, labels)` (and, with `years`, cut points) fitted on the other
    folds' rows only."""
    probs, labels, folds = np.asarray(probs), np.asarray(labels), np.asarray(folds)
    out = np.empty(len(labels), dtype=np.int64)
    for k in np.unique(folds):
        own = folds == k
        offsets = fit(probs[~own], labels[~own])
        cuts = fit_cuts(probs[~own], labels[~own], years[~own], offsets) if years is not None else None
        out[own] = decide(probs[own], offsets, years[own] if years is not None else None, cuts)
    return out


@dataclass(frozen=True)
class Tuning:
    """Offsets (and, for a number age head, cut points) fitted on every out-of-fold row, and whether they help rows
    they were not fitted on."""
    offsets: np.ndarray  # fitted on all rows
    crossed: np.ndarray  # each row's class, decided by offsets fitted on the other folds
    cv_tuned: float  # macro-F1 of `crossed`
    cv_argmax: float  # macro-F1 of the plain argmax
    cuts: tuple | None = None  # the age cut points (c1, c2) for the age in years, fitted on all rows


def tune(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, fit=plugin_offsets,
         years: np.ndarray | None = None) -> Tuning:
    """Cross-fit to judge the offsets (and cut points) honestly, then fit them on every row."""
    labels = np.asarray(labels, dtype=np.int64)
    crossed = cross_fitted(probs, labels, folds, fit, years)
    offsets = fit(probs, labels)
    cuts = fit_cuts(probs, labels, years, offsets) if years is not None else None
    return Tuning(offsets=offsets, crossed=crossed, cv_tuned=fast_macro_f1(labels, crossed),
                  cv_argmax=fast_macro_f1(labels, np.asarray(probs).argmax(1)), cuts=cuts)
