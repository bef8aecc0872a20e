"""Decisions for macro-F1: per-class offsets added to the log-probabilities before the argmax, fitted on
out-of-fold rows by coordinate ascent. Macro-F1 weighs each of the 18 classes alike, so a rare class's recall is
worth as much as a common one's; a plain argmax of calibrated probabilities does not maximise that.

Each class's offset is its age band's term (3 numbers, one of them redundant), the same for every mask state and
gender: the 60+ classes hold a handful of people each, and free per-class offsets fitted on 300 people's
out-of-fold rows followed their noise and lowered held-out F1; mask and gender terms (8 task terms in all) fitted
noise too, while the age terms carried over (bench/RESULTS.md, "Decision offsets" and "The epoch a fold keeps").
Cross-fitting (offsets fitted on the other folds, applied to the held-out one) keeps a tuned CV honest."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.labels import NUM_CLASSES, TASK_SIZES, decode_label

GRID = np.round(np.linspace(-2.0, 2.0, 41), 2)  # candidate values of one task term, in log-probability units
ROUNDS = 3  # passes over the task terms; a pass that improves nothing ends the search


def terms_of_class() -> np.ndarray:
    """(18, 8): row c picks the terms of class c's mask, gender and age (terms 0-2 mask, 3-4 gender, 5-7 age)."""
    starts = np.cumsum((0,) + TASK_SIZES[:-1])
    classes = np.arange(NUM_CLASSES)
    table = np.zeros((NUM_CLASSES, sum(TASK_SIZES)))
    for start, value in zip(starts, decode_label(classes)):
        table[classes, start + value] = 1.0
    return table


TERMS_OF_CLASS = terms_of_class()
AGE_TERMS = TERMS_OF_CLASS[:, -TASK_SIZES[-1]:]  # (18, 3): what train.py fits


def fast_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> float:
    """sklearn's macro-F1 over classes 0..n-1 with zero_division=0, from one bincount (the search calls it often)."""
    cm = np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)
    tp, support = np.diag(cm), cm.sum(1) + cm.sum(0)
    return float(np.where(support > 0, 2 * tp / np.maximum(support, 1), 0.0).mean())


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def decide(probs: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """The class of each row: argmax of log p + offsets (a plain argmax without offsets)."""
    return np.asarray(probs).argmax(1) if offsets is None else (log_probs(probs) + offsets).argmax(1)


def fit_offsets(probs: np.ndarray, labels: np.ndarray, terms_of_class: np.ndarray = AGE_TERMS) -> np.ndarray:
    """The class offsets (terms_of_class @ terms) that maximise the whole-set macro-F1 of `labels`, by coordinate
    ascent over each term's GRID, from zero. bench/decisions.py also passes np.eye(18) (a free offset per class) and
    TERMS_OF_CLASS (the 8 task terms)."""
    logp, labels = log_probs(probs), np.asarray(labels, dtype=np.int64)
    terms = np.zeros(terms_of_class.shape[1])
    best = fast_macro_f1(labels, logp.argmax(1))
    for _ in range(ROUNDS):
        improved = False
        for t in range(len(terms)):
            for value in GRID:
                trial = terms.copy()
                trial[t] = value
                score = fast_macro_f1(labels, (logp + terms_of_class @ trial).argmax(1))
                if score > best + 1e-12:
                    best, terms, improved = score, trial, True
        if not improved:
            break
    return terms_of_class @ terms


def cross_fitted(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                 terms_of_class: np.ndarray = AGE_TERMS) -> np.ndarray:
    """Each fold's rows decided with offsets fitted on the other folds' rows only."""
    probs, labels, folds = np.asarray(probs), np.asarray(labels), np.asarray(folds)
    out = np.empty(len(labels), dtype=np.int64)
    for k in np.unique(folds):
        own = folds == k
        out[own] = decide(probs[own], fit_offsets(probs[~own], labels[~own], terms_of_class))
    return out


@dataclass(frozen=True)
class Tuning:
    """Offsets fitted on every out-of-fold row, and whether they help rows they were not fitted on."""
    offsets: np.ndarray  # fitted on all rows
    crossed: np.ndarray  # each row's class, decided by offsets fitted on the other folds
    cv_tuned: float  # macro-F1 of `crossed`
    cv_argmax: float  # macro-F1 of the plain argmax

    @property
    def rule(self) -> str:
        """'tuned' where the cross-fitted CV beats the argmax one; offsets that only fit their own rows stay unused."""
        return "tuned" if self.cv_tuned > self.cv_argmax else "argmax"


def tune(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray,
         terms_of_class: np.ndarray = AGE_TERMS) -> Tuning:
    """Cross-fit to judge the offsets honestly, then fit them on every row."""
    labels = np.asarray(labels, dtype=np.int64)
    crossed = cross_fitted(probs, labels, folds, terms_of_class)
    return Tuning(offsets=fit_offsets(probs, labels, terms_of_class), crossed=crossed,
                  cv_tuned=fast_macro_f1(labels, crossed), cv_argmax=fast_macro_f1(labels, np.asarray(probs).argmax(1)))
