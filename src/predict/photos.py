"""predict.py: any photos (files, folders searched recursively, globs) through finished runs, one row each: the
class, the task names, the probabilities per task and per class. A photo that cannot be used becomes an error row
naming the problem, unless --strict, and the others are still predicted."""
from __future__ import annotations

import glob
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from src.config.schema import PredictConfig
from src.data.images import FileImages, read_rgb
from src.engine import builders
from src.errors import ConfigError, DataError
from src.files import real, shown
from src.labels import NUM_CLASSES, PROB_COLUMNS, TASK_NAMES, decode_label, task_probabilities
from src.predict import offsets
from src.predict.engines import predict_run, run_engine
from src.predict.plans import reading_runs
from src.predictions import YEARS, Predictions
from src.run.atomic import check_writable, save_text
from src.run.logging import setup_logging

log = logging.getLogger("maskcls")

TASK_COLUMNS = [f"p_{task}_{name}" for task, names in TASK_NAMES.items() for name in names]
COLUMNS = ["path", "class", *TASK_NAMES, *TASK_COLUMNS, *PROB_COLUMNS, "error"]  # and YEARS before error, where there are


def hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(inputs: list[str]) -> list[tuple[str, str | None]]:
    """(path, problem or None) for each photo named: files as given, folders' files (recursively, hidden ones
    skipped, sorted), and glob matches; a name that finds nothing is one row with its problem."""
    found: list[tuple[str, str | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if not p.is_dir() and not hidden(p, path))
            found += [(str(p), None) for p in files] or [(item, "folder holds no file")]
        elif path.exists() or path.is_symlink():
            found.append((item, None))
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if not Path(m).is_dir())
            found += [(m, None) for m in matches] or [(item, "matches no file")]
        else:
            found.append((item, "not found"))
    return list(dict.fromkeys(found))  # a photo named twice is predicted once


class Photos(Dataset):
    """(uint8 CHW tensor, 0, index) per readable photo, decoded and resized as infer does (FileImages); (zeros, 1,
    index) for one that is not, unless `strict`, where its DataError stops the prediction."""

    def __init__(self, images: FileImages, input_size: tuple[int, int], transform, strict: bool):
        self.images, self.transform, self.strict = images, transform, strict
        self.blank = torch.zeros((3, *input_size), dtype=torch.uint8)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        try:
            return self.transform(self.images[i]), 0, i
        except DataError:
            if self.strict:
                raise
            return self.blank, 1, i


def problem_of(path: str, max_pixels: int) -> str:
    try:
        read_rgb(path, max_pixels)
    except DataError as e:
        return e.problems[0]
    return "could not be predicted"


def rows(found: list[tuple[str, str | None]], pred: Predictions, labels: np.ndarray,
         problems: dict[int, str]) -> pd.DataFrame:
    """One row per photo with its decided class and its predictions' table (with the age in years, where there are):
    an error row carries its problem and no prediction."""
    mask, gender, age = task_probabilities(pred.probs)
    names = [np.asarray(names)[k] for names, k in zip(TASK_NAMES.values(), decode_label(labels))]
    df = pd.DataFrame({"path": [p for p, _ in found], "class": labels.astype(int)})
    for task, column in zip(TASK_NAMES, names):
        df[task] = column
    df[TASK_COLUMNS] = np.concatenate([mask, gender, age], axis=1)
    df = pd.concat([df, pred.table()], axis=1).astype({"class": "Int64"})
    df["error"] = ""
    for i, problem in problems.items():
        df.loc[i, [c for c in df.columns if c not in ("path", "error")]] = pd.NA
        df.loc[i, "error"] = problem
    return df


def as_json(df: pd.DataFrame) -> str:
    """A list of objects: path, class, the task names, probabilities per task and per class, error (or null)."""
    out = []
    for row in df.itertuples(index=False):
        r = dict(zip(df.columns, row))
        ok = not r["error"]
        out.append({"path": r["path"], "class": int(r["class"]) if ok else None,
                    **{task: r[task] if ok else None for task in TASK_NAMES},
                    "tasks": {task: {name: round(float(r[f"p_{task}_{name}"]), 6) for name in names}
                              for task, names in TASK_NAMES.items()} if ok else None,
                    "probs": [round(float(r[c]), 6) for c in PROB_COLUMNS] if ok else None,
                    **({YEARS: round(float(r[YEARS]), 3) if ok else None} if YEARS in r else {}),
                    "error": r["error"] or None})
    return json.dumps(out, indent=1) + "\n"


def output_text(df: pd.DataFrame, fmt: str) -> str:
    return as_json(df) if fmt == "json" else df.to_csv(index=False, float_format="%.6g")


def check_out(cfg: PredictConfig, found):
    """--out is a file name that is none of the photos, and its suffix agrees with --format."""
    if not cfg.out:
        return None
    out = Path(cfg.out)
    if out.is_dir():
        raise ConfigError(f"--out {shown(cfg.out)} is a folder; give the predictions file's name")
    if real(out) in {real(p) for p, _ in found}:
        raise ConfigError(f"--out {shown(cfg.out)} is one of the photos to predict; choose another name")
    suffix = out.suffix.lower().lstrip(".")
    if suffix in ("csv", "json") and suffix != cfg.format:
        raise ConfigError(f"--out {shown(cfg.out)} ends in .{suffix} but --format is {cfg.format}; "
                          f"pass --format {suffix}")
    check_writable(out.parent)
    return out


def predict(cfg: PredictConfig, maps=None) -> pd.DataFrame:
    """Rows for every photo of cfg.inputs, written to --out (atomically) or printed; with --cam, `maps` draws where
    the models look (src/insight/cam.py's PhotoMaps of the --cam folder, handed in by predict.py): its places are
    checked before any photo is predicted, and it draws once the rows are written, so a picture that cannot be
    written loses no prediction."""
    setup_logging()
    if not cfg.inputs:
        raise ConfigError("name the photos to predict: image files, folders or globs after the options")
    found = collect(cfg.inputs)
    out = check_out(cfg, found)
    if cfg.cam:
        if maps is None:
            raise ConfigError("--cam needs the Grad-CAM drawing of src/insight/cam.py: run predict.py")
        maps.check([p for p, _ in found])
    with reading_runs(cfg) as plans:  # every run and checkpoint is checked before any model loads
        return predict_found(cfg, found, out, plans, maps)


class Predictor:
    """Finished runs ready to predict any photos, the one path from a photo to its decision (predict.py and the app
    page): the decision settled and every engine opened once, then `rows` per call."""

    def __init__(self, cfg: PredictConfig, plans):
        self.cfg, self.plans = cfg, plans
        self.prepared = offsets.prepare(cfg.decision, plans)  # decision.json and every checkpoint before any prediction
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.engines: list | None = None

    def open(self):
        """Open every run's engine (its checkpoints read, its graph exported or its cache checked)."""
        if self.engines is None:
            self.engines = [run_engine(plan, self.cfg, self.device) for plan in self.plans]
        return self

    def rows(self, found, strict: bool = False) -> pd.DataFrame:
        """One row per (path, problem or None) of `found`: its class and probabilities, or its problem."""
        cfg = self.cfg
        problems = {i: p for i, (_, p) in enumerate(found) if p}
        if problems and strict:
            i = min(problems)
            raise DataError([f"{shown(found[i][0])}: {problems[i]}"])
        readable = np.array([i for i, (_, p) in enumerate(found) if not p], dtype=int)
        paths = [found[i][0] for i in readable]
        parts, bad = [], np.zeros(len(paths), dtype=bool)
        for plan, engine in zip(self.plans, self.open().engines if paths else []):
            ds = Photos(builders.file_images(plan.cfg, paths, cfg.log_dir, cfg.max_image_pixels),
                        builders.input_size(plan.cfg), builders.eval_transform(plan.cfg), strict)
            flags, indices, got = predict_run(engine, ds, cfg, self.device,
                                              desc=f"predict {plan.name}" if len(paths) > 64 else None)
            parts.append(got.placed(len(found), readable[indices]))
            bad[indices[flags == 1]] = True
        for j in np.flatnonzero(bad):
            problems[int(readable[j])] = problem_of(paths[j], cfg.max_image_pixels)
        pred = Predictions.mean(parts) if parts else Predictions(np.zeros((len(found), NUM_CLASSES)))
        pred.probs[list(problems)] = 1.0 / NUM_CLASSES  # placeholders; error rows carry no prediction
        classes, _ = offsets.classify(self.prepared, pred)
        return rows(found, pred, classes, {i: problems[i] for i in sorted(problems)})


def predict_found(cfg: PredictConfig, found, out, plans, maps=None) -> pd.DataFrame:
    if cfg.group == "people":
        log.info("group people: none (predict.py's photos are any photos, not known to be whole people); every "
                 "photo decided alone")
    predictor = Predictor(cfg, plans)
    df = predictor.rows(found, cfg.strict)
    text = output_text(df, cfg.format)
    if out is None:
        sys.stdout.write(text)
    else:
        save_text(text, out)
        log.info("predictions of %d photo(s) (%d error rows) -> %s", len(df), int((df["error"] != "").sum()), out)
    if cfg.cam:
        maps.write(predictor, df)
    return df
