"""A run's results from its out-of-fold rows, computed above the records that write them (src/run/records.py): the
CV (macro-F1 of each fold's rows and of all of them, per task, the age error of a number age head); once every fold
has rows, the tuned decision (offsets and cut points, cross-fitted to judge them: decision.json) and, with the
training photos' people, the grouped CV and the person metric (people.npz)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src import decision, people
from src.metrics import confusion, evaluate, scores
from src.predictions import Predictions
from src.run.logging import log
from src.run.oof import AGE


@dataclass(frozen=True)
class PhotoPeople:
    """What the grouped CV needs of the training photos: their appearance features (`appearance(paths)`) and their
    known people, which fit each fold's person metric on the other folds and score the clustering afterwards; the
    clustering never sees them."""
    appearance: Callable[[list[str]], np.ndarray]
    person_of: dict[str, str]


@dataclass(frozen=True)
class RunResults:
    """What a run's records write of its out-of-fold rows."""
    cv: dict  # cv.json
    confusion: np.ndarray  # of every row's argmax: the run's confusion.png
    folds: int  # how many folds the rows come from
    decision: dict | None = None  # decision.json, once every fold has its rows
    people: dict | None = None  # people.npz's arrays, with the training photos' people


def evaluate_run(oof: pd.DataFrame, n_folds: int, photo_people: PhotoPeople | None = None) -> RunResults | None:
    """The results of a run's out-of-fold rows (None without any): macro-F1 of each fold's rows and of all of them
    (argmax). Once every fold has its rows, also the tuned decision: offsets fitted on all of them, and the tuned CV,
    cross-fitted (each fold decided by offsets fitted on the other folds), with its per-task scores; with
    `photo_people`, the same per person."""
    if oof.empty:
        return None
    pred, labels = Predictions.from_table(oof), oof["label"].to_numpy()
    whole = evaluate(labels, pred.probs)
    folds = {int(k): evaluate(g["label"], Predictions.from_table(g).probs)["f1"] for k, g in oof.groupby("fold")}
    cv = dict(cv_f1=whole["f1"], fold_f1=folds, **{f"cv_{k}": v for k, v in whole.items() if k != "f1"},
              oof_rows=len(oof))
    if pred.years is not None:
        cv["cv_age_mae"] = age_error(oof)
    results = dict(cv=cv, confusion=confusion(labels, oof["pred"]), folds=oof["fold"].nunique())
    if oof["fold"].nunique() < n_folds:  # the tuned decision waits for every fold's rows
        return RunResults(**results)
    tuning = decision.tune(pred.probs, labels, oof["fold"].to_numpy(), years=pred.years)
    tuned = scores(labels, tuning.crossed)
    cv |= {"cv_f1_tuned": tuned["f1"], **{f"cv_{k}_tuned": v for k, v in tuned.items() if k != "f1"}}
    chosen = dict(offsets=rounded(tuning.offsets), oof_rows=len(oof), cv_f1_tuned=tuned["f1"], cv_f1_argmax=whole["f1"])
    if tuning.cuts is not None:
        chosen["age_cuts"] = list(tuning.cuts)
    missing = [p for p in oof["path"] if photo_people is not None and p not in photo_people.person_of]
    found = None
    if missing:  # rows of data at another place (a resume with another data_dir)
        log.info("grouped CV: skipped, %d out-of-fold rows are not photos of this data (%s)", len(missing), missing[0])
    elif photo_people is not None:
        grouped, found = people_results(oof, photo_people)
        cv |= grouped.record() | {f"cv_{k}_grouped_tuned": v for k, v in scores(labels, grouped.crossed).items()
                                  if k != "f1"}
        chosen |= dict(person_offsets=rounded(grouped.offsets), cv_f1_grouped_tuned=grouped.cv_tuned)
    return RunResults(**results, decision=chosen, people=found)


def age_error(oof: pd.DataFrame) -> float | None:
    """How many years off a number age head is on average, out of fold; None for a run without ages in years."""
    years = Predictions.from_table(oof).years
    return None if years is None else float(np.abs(years - oof[AGE].to_numpy()).mean())


def rounded(offsets: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in offsets]


def people_results(oof: pd.DataFrame, photo_people: PhotoPeople) -> tuple[people.PeopleCV, dict]:
    """The grouped CV of the out-of-fold rows, and people.npz's arrays: the person metric fitted on every training
    photo (infer groups eval with it) and each out-of-fold row's place under its fold's metric (run ensembles group
    their mean out-of-fold rows with it)."""
    paths = oof["path"].tolist()
    thumbs = photo_people.appearance(paths)
    ids = np.array([photo_people.person_of[p] for p in paths])
    folds = oof["fold"].to_numpy()
    embedded = people.oof_embedding(thumbs, ids, folds)
    grouped = people.people_cv(Predictions.from_table(oof).probs, oof["label"].to_numpy(), folds, embedded, ids)
    metric = people.PersonMetric.fit(thumbs, ids)
    log.info("grouped CV: %s; macro-F1 %.4f argmax, %.4f tuned (cross-fitted)",
             ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in grouped.clustering.items()),
             grouped.cv_argmax, grouped.cv_tuned)
    return grouped, dict(paths=np.array(paths), embedded=embedded, matrix=metric.matrix, offset=metric.offset)
