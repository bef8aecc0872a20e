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


def find_people(group: str, plans: list[RunPlan], paths, probs: np.ndarray, max_pixels: int,
                num_workers: int) -> people.Grouping:
    """The groups of the photos at `paths` (--group people), or why there are none; the line is logged."""
    start = time.perf_counter()
    grouping = people_of(group, plans, list(paths), probs, max_pixels, num_workers)
    grouping = dataclasses.replace(grouping, seconds=time.perf_counter() - start)
    log.info("%s", grouping.summary())
    return grouping


def people_of(group: str, plans: list[RunPlan], paths: list, probs: np.ndarray, max_pixels: int,
              num_workers: int) -> people.Grouping:
    n = len(paths)
    if group == "none":
        return people.ungrouped(n, "--group none")
    if n % people.PHOTOS_PER_PERSON:
        return people.ungrouped(n, f"{n} photos are not a multiple of {people.PHOTOS_PER_PERSON}, so they are not "
                                   f"whole people")
    saved = next((s for s in map(saved_people, plans) if s is not None), None)
    if saved is None:
        return people.ungrouped(n, f"run {plans[0].name} has no {plans[0].run.people.name}, written at the end of "
                                   f"training: `train.py --resume` of the finished run writes it")
    metric = people.PersonMetric(saved["matrix"], saved["offset"])
    thumbs = appearance(paths, max_pixels, default_workers(num_workers))
    if thumbs.shape[1] != metric.matrix.shape[0]:
        return people.ungrouped(n, "the run's person metric was fitted on other appearance features")
    return people.group_photos(people.photo_features(metric(thumbs), probs), probs)
