"""Out-of-fold predictions seen per task: the mask / gender / age marginals of the 18-class probabilities, and the
most confident mistakes of each task. Shared by the report and the finder; src/run/oof.py reads a run's rows."""
from __future__ import annotations

import numpy as np
import pandas as pd

from src.labels import PROB_COLUMNS, TASK_NAMES, decode_label


def task_probs(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Marginals of (N, 18) class probabilities: class = 6*mask + 3*gender + age, so axis order (mask, gender, age)."""
    cube = np.asarray(probs, dtype=float).reshape(-1, 3, 2, 3)
    return {"mask": cube.sum((2, 3)), "gender": cube.sum((1, 3)), "age": cube.sum((1, 2))}


def task_labels(labels) -> dict[str, np.ndarray]:
    mask, gender, age = decode_label(np.asarray(labels, dtype=int))
    return {"mask": mask, "gender": gender, "age": age}


def image_key(path) -> str:
    """'<person folder>/<file>': joins OOF rows to the data table wherever data_dir was mounted."""
    parts = str(path).replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:])


def confident_errors(oof: pd.DataFrame, per_task: int) -> pd.DataFrame:
    """The `per_task` most confident wrong predictions of each task (a row per image and task):
    path, task, label, pred (names), prob of the prediction; most confident first within a task.
    Gender and age belong to a person, so those keep one photo per person: more people, fewer repeats."""
    if oof.empty:
        return pd.DataFrame(columns=["path", "task", "label", "pred", "prob"])
    probs, labels = task_probs(oof[PROB_COLUMNS].to_numpy()), task_labels(oof["label"])
    folders = oof["path"].map(lambda p: image_key(p).split("/")[0]).to_numpy()  # one per person
    rows = []
    for task, names in TASK_NAMES.items():
        pred = probs[task].argmax(1)
        conf = probs[task].max(1)
        wrong = np.flatnonzero(pred != labels[task])
        ranked = wrong[np.argsort(-conf[wrong], kind="stable")]
        if task != "mask":
            ranked = ranked[~pd.Series(folders[ranked]).duplicated().to_numpy()]
        for i in ranked[:per_task]:
            rows.append(dict(path=oof["path"].iloc[i], task=task, label=names[labels[task][i]], pred=names[pred[i]],
                             prob=float(conf[i])))
    return pd.DataFrame(rows, columns=["path", "task", "label", "pred", "prob"])
