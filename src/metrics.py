"""Metrics over a whole set (never averaged over batches): accuracy, macro-F1, per-task F1, confusion."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from src.labels import CLASS_NAMES, NUM_CLASSES, decode_label


def macro_f1(y_true, y_pred, n: int = NUM_CLASSES) -> float:
    return float(f1_score(y_true, y_pred, labels=list(range(n)), average="macro", zero_division=0))


def scores(y_true, y_pred) -> dict:
    """acc, f1 (18-class macro), f1_mask, f1_gender, f1_age for true and predicted labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    t, p = decode_label(y_true), decode_label(y_pred)
    return dict(acc=float((y_true == y_pred).mean()), f1=macro_f1(y_true, y_pred),
                f1_mask=macro_f1(t[0], p[0], 3), f1_gender=macro_f1(t[1], p[1], 2), f1_age=macro_f1(t[2], p[2], 3))


def evaluate(y_true, probs) -> dict:
    """scores() of the argmax of (N, 18) probabilities."""
    return scores(y_true, np.asarray(probs).argmax(1))


def confusion(y_true, y_pred) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(NUM_CLASSES)))


def confusion_text(cm: np.ndarray) -> str:
    head = "true \\ predicted".ljust(24) + "".join(f"{k:>5d}" for k in range(NUM_CLASSES))
    rows = [f"{k:>2d} {CLASS_NAMES[k]:<21}" + "".join(f"{v:>5d}" for v in row) for k, row in enumerate(cm)]
    return "\n".join([head, *rows])
