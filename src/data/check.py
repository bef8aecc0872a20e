"""`train.py --check_data`: every image decoded, and a JSON summary of people, classes and folds."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from src.data.crops import Crops
from src.data.images import verify_image
from src.data.tables import load_eval, load_train
from src.errors import DataError
from src.labels import NUM_CLASSES


def check_data(data_dir, corrections: str, age_filter: int, n_folds: int, seed: int, max_pixels: int,
               crops: Callable[[list], Crops] | None = None) -> dict:
    """Full validation (every image decoded) and a JSON-able summary; problems listed, not raised. `crops` gives the
    crop boxes of a list of paths (the run's crop): the summary says how many face crops fell back."""
    report: dict = {"data_dir": str(data_dir), "problems": []}
    problems = report["problems"]
    try:
        images = load_train(data_dir, corrections, age_filter, n_folds, seed, report)
    except DataError as e:
        problems.extend(e.problems)
        images = None
    try:
        evals = load_eval(data_dir)
        report["eval_images"] = len(evals)
        if crops is not None:
            report["crop_eval"] = crops(list(evals["path"])).summary()
        problems.extend(p for p in (verify_image(Path(f), max_pixels) for f in evals["path"]) if p)
    except DataError as e:
        problems.extend(e.problems)
    if images is not None:
        problems.extend(p for p in (verify_image(Path(f), max_pixels) for f in images["path"]) if p)
        report["train_images"] = len(images)
        if crops is not None:
            report["crop_train"] = crops(list(images["path"])).summary()
        report["per_class"] = {
            "raw": dict(enumerate(report.pop("raw_per_class"))),
            "corrected": per_class(images["label"]),
            "train_labels": per_class(images["train_label"]),
        }
        report["folds"] = [dict(fold=k, people=int(g["person_id"].nunique()), images=len(g),
                                per_class=per_class(g["label"])) for k, g in images.groupby("fold")]
        owners = images.groupby("person_id")["fold"].nunique()
        report["folds_disjoint"] = bool((owners == 1).all())
    report["junk_skipped"] = report.get("junk_skipped", [])
    report["warnings"] = report.get("warnings", [])
    return report


def print_check_data(data_dir, corrections: str, age_filter: int, n_folds: int, seed: int, max_pixels: int,
                     crops: Callable[[list], Crops] | None = None) -> int:
    """check_data as JSON on stdout, each problem on stderr; the exit code (1 when there are problems)."""
    report = check_data(data_dir, corrections, age_filter, n_folds, seed, max_pixels, crops)
    print(json.dumps(report, indent=2))
    for problem in report["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0


def per_class(labels) -> dict[int, int]:
    return dict(enumerate(np.bincount(np.asarray(labels, dtype=int), minlength=NUM_CLASSES).tolist()))
