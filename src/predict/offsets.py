"""Which offsets turn the runs' probabilities into classes (--decision): tuned offsets, or none for a plain argmax.
One run uses its decision.json (fitted by train.py on all its out-of-fold rows); a run ensemble fits offsets on
the runs' mean out-of-fold probabilities, the same mean its predictions take. `classify` applies them through
src/decision.py's `decide`, per person where the photos were grouped."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from src import decision, people
from src.errors import CheckpointError
from src.labels import AGES, NUM_CLASSES
from src.model.age import tells_years
from src.predict import grouping
from src.predict.plans import RunPlan
from src.files import irregular, read_json
from src.predictions import Predictions
from src.run.oof import read_oof

log = logging.getLogger("maskcls")


def saved_offsets(plan: RunPlan, key: str = "offsets") -> tuple[np.ndarray | None, str]:
    """A run's decision.json offsets under `key` (checked: 18 numbers a fit can make), and why. The person offsets
    ("person_offsets") are None without a word where an older decision.json lacks them."""
    path = plan.run.decision
    why = irregular(path)
    if why == "not found":
        return None, (f"argmax: run {plan.name} has no {path.name} (offsets are fitted once every fold has "
                      f"finished)")
    try:
        if why:
            raise ValueError(why)
        saved = read_json(path)
        if key != "offsets" and isinstance(saved, dict) and key not in saved:
            return None, f"{path} has no {key}"
        offsets = saved[key]
        ok = len(offsets) == NUM_CLASSES and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 and abs(v) <= decision.MAX_OFFSET for v in offsets)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise unfitted(path, f"{NUM_CLASSES} finite '{key}' within +-{decision.MAX_OFFSET:g}")
    return np.asarray(offsets, dtype=np.float64), f"tuned: {key} of {path}"


def unfitted(path, expected: str) -> CheckpointError:
    """decision.json holds something no fit writes."""
    return CheckpointError(f"{path}: expected {expected} (what a fit makes); retrain the run's last fold to rewrite "
                           f"it, or use --decision argmax")


def saved_cuts(plan: RunPlan) -> tuple | None:
    """A number age head's cut points from its decision.json (checked: c1 < c2 within the ages), or None for a band
    head, whose decision has none. A number head's run always had them (they came with the heads): missing or null,
    the file is refused like any other bad value, rather than decided with other cuts."""
    if not tells_years(plan.cfg.age_head) or not plan.run.decision.is_file():
        return None
    path = plan.run.decision
    try:
        cuts = read_json(path)["age_cuts"]
        ok = (len(cuts) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cuts)
              and AGES[0] <= cuts[0] < cuts[1] <= AGES[1] + 1)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise unfitted(path, f"'age_cuts' of two ages c1 < c2 within {AGES[0]}..{AGES[1] + 1} (age head "
                             f"{plan.cfg.age_head})")
    return float(cuts[0]), float(cuts[1])


def complete_oof(plan: RunPlan) -> pd.DataFrame | None:
    """Every fold's out-of-fold rows of a run by path, or None when a fold has none yet."""
    oof = read_oof(plan.run, range(plan.cfg.n_folds), complete=True)
    return None if oof is None else oof.set_index("path").sort_index()


def choose_offsets(rule: str, plans: list[RunPlan]) -> tuple[np.ndarray | None, tuple | None, str]:
    """(offsets or None for argmax, age cut points or None, how the decision was made) for --decision `rule`."""
    if rule == "argmax":
        return None, None, "argmax (--decision argmax)"
    if len(plans) == 1:
        offsets, how = saved_offsets(plans[0])
        cuts = saved_cuts(plans[0]) if offsets is not None else None
        return offsets, cuts, how + (f"; age cut points {cuts[0]:g} and {cuts[1]:g}" if cuts else "")
    oofs = [complete_oof(p) for p in plans]
    missing = [p.name for p, o in zip(plans, oofs) if o is None]
    if missing:
        return None, None, f"argmax: run(s) {', '.join(missing)} lack out-of-fold rows of some fold"
    if any(not o.index.equals(oofs[0].index) for o in oofs):
        return None, None, "argmax: the runs' out-of-fold rows are not the same images"
    pred = Predictions.mean([Predictions.from_table(o) for o in oofs])
    labels, folds = oofs[0]["label"].to_numpy(), oofs[0]["fold"].to_numpy()
    tuning = decision.tune(pred.probs, labels, folds, years=pred.years)
    where = f"the {len(plans)} runs' mean out-of-fold probabilities ({len(labels)} rows)"
    cut_text = f"; age cut points {tuning.cuts[0]:g} and {tuning.cuts[1]:g}" if tuning.cuts else ""
    return tuning.offsets, tuning.cuts, (f"tuned: offsets{' and cut points' if tuning.cuts else ''} fitted on "
                                         f"{where} (cross-fitted CV {tuning.cv_tuned:.4f}, argmax "
                                         f"{tuning.cv_argmax:.4f}){cut_text}")


def choose_person_offsets(rule: str, plans: list[RunPlan], photo: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    """(offsets for decisions per person, how) for --decision `rule`: one run's decision.json person_offsets
    (fitted on its grouped out-of-fold rows); for a run ensemble, fitted on the runs' mean out-of-fold rows grouped
    as the first run grouped its own (people.npz). Without them, the per-photo offsets `photo` apply per person."""
    if rule == "argmax":
        return None, "argmax per person (--decision argmax)"
    if len(plans) == 1:
        offsets, how = saved_offsets(plans[0], "person_offsets")
    else:
        offsets, how = ensemble_person_offsets(plans)
    if offsets is None:
        return photo, f"{how}: the per-photo offsets apply per person"
    return offsets, how


def ensemble_person_offsets(plans: list[RunPlan]) -> tuple[np.ndarray | None, str]:
    oofs = [complete_oof(p) for p in plans]
    saved = grouping.saved_people(plans[0])
    if any(o is None for o in oofs) or saved is None or any(not o.index.equals(oofs[0].index) for o in oofs):
        return None, f"run {plans[0].name} has no grouped out-of-fold rows all the runs share"
    order = pd.Index(saved["paths"]).get_indexer(oofs[0].index)
    if (order < 0).any():
        return None, f"{plans[0].run.people} does not hold the runs' out-of-fold rows"
    probs = Predictions.mean([Predictions.from_table(o) for o in oofs]).probs
    labels, folds = oofs[0]["label"].to_numpy(), oofs[0]["fold"].to_numpy()
    groups = people.oof_groups(saved["embedded"][order], probs, folds)
    crossed = people.cross_fitted_people(probs, labels, folds, groups)
    return people.person_offsets(probs, labels, groups), (
        f"tuned: person offsets fitted on the {len(plans)} runs' mean out-of-fold rows, grouped (cross-fitted CV "
        f"{decision.fast_macro_f1(labels, crossed):.4f})")


@dataclass(frozen=True)
class Decision:
    """How classes are chosen, settled before any photo is predicted: per-photo offsets (None: argmax) and, for
    number age heads, the age cut points; and per person where the photos will be grouped."""
    offsets: np.ndarray | None
    how: str
    cuts: tuple | None = None
    person: np.ndarray | None = None
    person_how: str = ""


def prepare(rule: str, plans: list[RunPlan], grouped: bool = False) -> Decision:
    """The Decision of --decision `rule` for the runs, from their decision.json or out-of-fold rows: read and
    checked here, so that a bad file is said before the minutes of prediction. `grouped`: also per person."""
    offsets, cuts, how = choose_offsets(rule, plans)
    if not grouped:
        return Decision(offsets, how, cuts)
    return Decision(offsets, how, cuts, *choose_person_offsets(rule, plans, offsets))


def classify(prepared: Decision, pred: Predictions, found: people.Grouping | None = None) -> tuple[np.ndarray, dict]:
    """The classes of the predictions (the age band by cut points where there are cut points and ages in years), per
    person where `found` holds groups (there the bands' probabilities decide the age), and what the settings file
    records of the decision."""
    log.info("decision: %s", prepared.how)
    if found is None or not found.formed:  # cut points come with the ages in years of a number age head
        return (decision.decide(pred.probs, prepared.offsets, pred.years, prepared.cuts),
                describe(prepared.offsets, prepared.how, prepared.cuts))
    log.info("decision per person: %s", prepared.person_how)
    return (people.decide_people(pred.probs, found.groups, prepared.person, prepared.offsets),
            describe(prepared.offsets, prepared.how) | dict(people=describe(prepared.person, prepared.person_how)))


def describe(offsets: np.ndarray | None, how: str, cuts: tuple | None = None) -> dict:
    """The decision as settings files and model.json record it."""
    record = dict(rule="tuned" if offsets is not None else "argmax", how=how,
                  offsets=None if offsets is None else [round(float(v), 4) for v in offsets])
    return record if cuts is None else record | dict(age_cuts=list(cuts))
