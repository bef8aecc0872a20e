"""--group people for a prediction: the person metric a run learnt from its training photos (people.npz), the
eval photos' appearance under it, and the groups of seven src/people.py finds with the runs' probabilities."""
from __future__ import annotations

import dataclasses
import logging
import time
import zipfile

import numpy as np

from src import people
from src.data.appearance import appearance
from src.data.loaders import default_workers
from src.predict.plans import RunPlan

log = logging.getLogger("maskcls")


def saved_people(plan: RunPlan) -> dict | None:
    """A run's people.npz as arrays (paths, embedded, matrix, offset), or None where it has none or it is
    unreadable (a warning says so)."""
    path = plan.run.people
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {k: saved[k] for k in ("paths", "embedded", "matrix", "offset")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        log.warning("run %s: %s is unreadable (%s); its people are not grouped", plan.name, path, e)
        return None
    if arrays["matrix"].ndim != 2 or arrays["offset"].shape != arrays["matrix"].shape[1:]:
        log.warning("run %s: %s holds no person metric; its people are not grouped", plan.name, path)
        return None
    return arrays


def person_metric(group: str, plans: list[RunPlan]) -> tuple[dict | None, str]:
    """(the saved person metric of the first run that has one, or None and why) for --group `group`: read before
    any photo is predicted, so an unreadable people.npz is said first."""
    if group == "none":
        return None, "--group none"
    saved = next((s for s in map(saved_people, plans) if s is not None), None)
    if saved is None:
        return None, (f"run {plans[0].name} has no {plans[0].run.people.name}, written at the end of training: "
                      f"`train.py --resume` of the finished run writes it")
    return saved, ""


def find_people(metric: tuple[dict | None, str], paths, probs: np.ndarray, max_pixels: int,
                num_workers: int) -> people.Grouping:
    """The groups of the photos at `paths` under `metric` (person_metric's), or why there are none; the line is
    logged."""
    start = time.perf_counter()
    grouping = people_of(metric, list(paths), probs, max_pixels, num_workers)
    grouping = dataclasses.replace(grouping, seconds=time.perf_counter() - start)
    log.info("%s", grouping.summary())
    return grouping


def people_of(metric: tuple[dict | None, str], paths: list, probs: np.ndarray, max_pixels: int,
              num_workers: int) -> people.Grouping:
    n = len(paths)
    saved, why = metric
    if why == "--group none":
        return people.ungrouped(n, why)
    if n % people.PHOTOS_PER_PERSON:
        return people.ungrouped(n, f"{n} photos are not a multiple of {people.PHOTOS_PER_PERSON}, so they are not "
                                   f"whole people")
    if saved is None:
        return people.ungrouped(n, why)
    learnt = people.PersonMetric(saved["matrix"], saved["offset"])
    thumbs = appearance(paths, max_pixels, default_workers(num_workers))
    if thumbs.shape[1] != learnt.matrix.shape[0]:
        return people.ungrouped(n, "the run's person metric was fitted on other appearance features")
    return people.group_photos(people.photo_features(learnt(thumbs), probs), probs)
