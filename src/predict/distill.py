"""A student learns finished runs (--teacher): their probabilities of each training photo, out of fold (no model that
trained on a photo gives its target), and of unlabelled photos, their flip-TTA ensemble predicted as infer.py predicts.
Both are cached in the student's run folder with the teachers' identity, so a resumed student never recomputes or
mixes them; the teachers' tuned decision becomes the student's; then the run trains (src/engine/trainer.py)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.config.schema import AUTO_EPOCHS, InferConfig, TrainConfig
from src.data.tables import load_train, load_unlabeled
from src.engine import builders
from src.engine import dist as dist_mod
from src.engine.state import Teaching
from src.engine.trainer import continued, train
from src.errors import ConfigError
from src.files import file_digest, read_json, real
from src.labels import PROB_COLUMNS
from src.predict import offsets
from src.predict.infer import open_engines, predict_runs
from src.predict.plans import RunPlan, reading_runs
from src.run import tracking
from src.run.atomic import csv_writer, replace_together, text_writer
from src.run.checkpoint import read
from src.run.logging import setup_logging
from src.run.oof import read_oof
from src.run.rundir import RunDir

log = logging.getLogger("maskcls")
TRAIN, UNLABELED = "oof", "ensemble"  # soft_targets.csv's sources: a teacher fold that never saw the photo, or all


def distill_train(cfg: TrainConfig) -> dict:
    """Check the teachers against the student's data, claim the run, make (or reuse) the soft targets and the
    decision, then train. Everything checkable is checked before the run name is claimed."""
    setup_logging()
    dist = dist_mod.setup(cfg.dist_backend)
    cfg = continued(cfg, dist)
    teachers = teacher_config(cfg)
    table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir) if cfg.distill_unlabeled_share > 0 else None
    run = RunDir(cfg.log_dir, cfg.name)
    with reading_runs(teachers) as plans:  # held against a teacher's --overwrite while its files are read
        check_teachers(cfg, plans)
        train_soft = out_of_fold(plans, table, cfg.data_dir)
        builders.check_requirements(cfg)
        if cfg.epochs == AUTO_EPOCHS:
            cfg = dataclasses.replace(cfg, epochs=kept_epochs(plans))
            log.info("--epochs auto: %d, the teachers' median kept epoch (counted from 1)", cfg.epochs)
        if dist.main:
            tracking.check(cfg)  # a tracker that cannot be reached or written, before the run name is claimed
            identity = teacher_identity(plans, cfg, unlabeled)
            run.claim(cfg.resume, cfg.overwrite)
            if not (run.exists and cached(run, identity)):  # the targets, their teachers and the decision: all three
                replace_together(soft_targets(run, identity, train_soft, teachers, plans, unlabeled)
                                 | decision(run, plans))
    dist_mod.barrier(dist)
    return train(cfg, teaching=read_soft_targets(run, table, cfg.data_dir, unlabeled))


def teacher_config(cfg: TrainConfig) -> InferConfig:
    """The teachers as infer.py would predict with them: every finished fold's kept checkpoint, flip TTA."""
    return InferConfig(log_dir=cfg.log_dir, data_dir=cfg.data_dir, runs=list(cfg.teacher), checkpoint="auto",
                       tta="flip", amp=cfg.amp, channels_last=cfg.channels_last, num_workers=cfg.num_workers,
                       prefetch_factor=cfg.prefetch_factor, infer_batch_size=cfg.infer_batch_size,
                       max_image_pixels=cfg.max_image_pixels)


def check_teachers(cfg: TrainConfig, plans: list[RunPlan]):
    """Each teacher finished every fold, and its classes and heads are the student's."""
    for plan in plans:
        t = plan.cfg
        if t.fold == "full":
            raise ConfigError(f"teacher {plan.name} is a --fold full run: it has no out-of-fold rows to teach with; "
                              f"name a K-fold run")
        unfinished = sorted(set(range(t.n_folds)) - set(plan.folds) | set(plan.training))
        if unfinished:
            busy = "".join(f"; fold {k} is being trained by {who}" for k, who in plan.training.items())
            raise ConfigError(f"teacher {plan.name} is not finished: fold(s) {', '.join(map(str, unfinished))} of "
                              f"{t.n_folds} have no finished last.pt{busy}; finish it (train.py --name {plan.name} "
                              f"--fold all --resume) or name another run")
        if t.age_filter != cfg.age_filter:
            raise ConfigError(f"teacher {plan.name}'s classes differ from the student's: its training labels call age "
                              f">= {t.age_filter} '60+', the student's >= {cfg.age_filter}; set --age_filter "
                              f"{t.age_filter} or name another teacher")
        if (t.heads, t.age_head) != (cfg.heads, cfg.age_head):
            raise ConfigError(f"teacher {plan.name}'s heads differ from the student's: heads {t.heads}, age_head "
                              f"{t.age_head} against {cfg.heads}, {cfg.age_head}; give the student the teacher's")


def out_of_fold(plans: list[RunPlan], table: pd.DataFrame, data_dir) -> pd.DataFrame:
    """Each training photo's probabilities (path, p0..p17): the mean over the teachers of the row its out-of-fold
    model gave, checked against the teacher's folds.csv (the row's fold is the person's fold: that model never
    trained on the photo). Every photo of the student's data must have one, and no other."""
    images = relative(table["path"], data_dir)
    person = dict(zip(images, table["person_id"].astype(str)))
    probs = []
    for plan in plans:
        oof = read_oof(plan.run, range(plan.cfg.n_folds), complete=True)
        where = f"teacher {plan.name}'s oof.csv files ({plan.run.root})"
        if oof is None or not set(PROB_COLUMNS) <= set(oof.columns):
            raise ConfigError(f"{where}: expected every fold's rows with columns path, fold and p0 to p17")
        rows = oof.assign(image=relative(oof["path"], plan.cfg.data_dir)).set_index("image")
        if rows.index.duplicated().any():
            raise ConfigError(f"{where}: the photo {rows.index[rows.index.duplicated()][0]} has more than one row; "
                              f"each photo is validated by one fold")
        if set(rows.index) != set(images):
            extra, missing = set(rows.index) - set(images), set(images) - set(rows.index)
            raise ConfigError(f"{where}: their photos are not the student's ({len(missing)} of the student's "
                              f"{len(images)} missing, e.g. {next(iter(missing), '-')}; {len(extra)} not in "
                              f"{data_dir}, e.g. {next(iter(extra), '-')}); the teacher must have trained on this data")
        folds = pd.read_csv(plan.run.folds_csv, dtype={"person_id": str}).set_index("person_id")["fold"]
        own = folds.reindex([person[i] for i in rows.index]).to_numpy()
        wrong = np.flatnonzero(own != rows["fold"].to_numpy())
        if len(wrong):
            i = wrong[0]
            raise ConfigError(f"{where}: the row of {rows.index[i]} comes from fold {rows['fold'].iloc[i]}, but its "
                              f"person {person[rows.index[i]]} is in fold {own[i]} of {plan.run.folds_csv}: not out of "
                              f"fold ({len(wrong)} such rows)")
        p = rows.loc[images, PROB_COLUMNS].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~(np.isfinite(p).all(1) & (p >= 0).all(1) & (np.abs(p.sum(1) - 1) < 1e-3)))
        if len(bad):
            raise ConfigError(f"{where}: the row of {images[bad[0]]} holds no probabilities (18 finite values >= 0 "
                              f"summing to 1) ({len(bad)} such rows)")
        probs.append(p)
    return pd.DataFrame(np.mean(probs, axis=0), columns=PROB_COLUMNS).assign(image=images)


def relative(paths, root) -> list[str]:
    """Paths as they are below `root` (a run may have read its data at another place)."""
    root = Path(root)
    out = []
    for p in map(Path, paths):
        try:
            out.append(p.relative_to(root).as_posix())
        except ValueError:
            out.append(p.as_posix())  # not below the data: matches no photo of it
    return out


def kept_epochs(plans: list[RunPlan]) -> int:
    """The median over the teachers' folds of the epoch each kept (its oof.csv's and checkpoint's), counted from 1."""
    what_to_do = "retrain that fold of the teacher or name another teacher"
    epochs = [int(read(path, what_to_do, mmap=True)["epoch"]) for plan in plans for path in plan.checkpoints]
    return int(np.round(np.median(epochs))) + 1


def teacher_identity(plans: list[RunPlan], cfg: TrainConfig, unlabeled: pd.DataFrame | None) -> dict:
    """What the soft targets were made from: each teacher's out-of-fold rows and kept checkpoints (SHA-256), and
    the unlabelled photos."""
    teachers = {plan.name: dict(oof={str(k): file_digest(plan.run.oof(k)) for k in plan.folds},
                                checkpoints={path.relative_to(plan.run.root).as_posix(): file_digest(path)
                                             for path in plan.checkpoints}) for plan in plans}
    photos = None if unlabeled is None else dict(
        folder=str(real(cfg.unlabeled_dir)) if cfg.unlabeled_dir else f"{real(cfg.data_dir)} eval",
        images=hashlib.sha256("\n".join(sorted(unlabeled["ImageID"])).encode()).hexdigest())
    return dict(teachers=teachers, unlabeled=photos)


def cached(run: RunDir, identity: dict) -> bool:
    """Whether the run holds soft targets of these teachers; other teachers' are refused, never mixed."""
    if not run.soft_targets.is_file() or not run.soft_source.is_file():
        return False
    try:
        saved = read_json(run.soft_source)
    except (OSError, ValueError):
        saved = None
    if saved != identity:
        raise ConfigError(f"{run.soft_source}: this run's soft targets were made from other teachers or photos than "
                          f"--teacher {' '.join(identity['teachers'])} and the unlabelled photos give now (their "
                          f"oof.csv or checkpoints, or the unlabelled photos changed); train a new --name, or "
                          f"--overwrite this one")
    log.info("soft targets: reusing %s (the same teachers)", run.soft_targets)
    return True


def soft_targets(run: RunDir, identity: dict, train_soft: pd.DataFrame, teachers: InferConfig,
                 plans: list[RunPlan], unlabeled: pd.DataFrame | None) -> dict:
    """The writes of soft_targets.csv (image, source, p0..p17) and soft_targets.json (the teachers' identity)."""
    parts = [train_soft.assign(source=TRAIN)]
    if unlabeled is not None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        pred = predict_runs(teachers, plans, open_engines(teachers, plans, device), unlabeled["path"], device)
        parts.append(pd.DataFrame(pred.probs, columns=PROB_COLUMNS).assign(image=unlabeled["ImageID"].to_numpy(),
                                                                           source=UNLABELED))
    soft = pd.concat(parts, ignore_index=True)[["image", "source", *PROB_COLUMNS]]
    log.info("soft targets: %d training photos out of fold, %d unlabelled photos by the ensemble of %s -> %s",
             len(train_soft), 0 if unlabeled is None else len(unlabeled), ", ".join(p.name for p in plans),
             run.soft_targets)
    return {run.soft_targets: csv_writer(soft, float_format="%.6g"),
            run.soft_source: text_writer(json.dumps(identity, indent=2))}


def decision(run: RunDir, plans: list[RunPlan]) -> dict:
    """The write of decision.json: the teachers' tuned decision (their decision.json, or offsets fitted on their mean
    out-of-fold rows) as the student's: it learnt their probabilities, and has no out-of-fold rows of its own to fit
    one on."""
    found, cuts, how = offsets.choose_offsets("tuned", plans)
    if found is None:
        log.info("decision: the teachers have none (%s); the student decides by argmax", how)
        return {}
    chosen = dict(offsets=[round(float(v), 4) for v in found], from_teachers=[p.name for p in plans], how=how)
    return {run.decision: text_writer(json.dumps(chosen | (dict(age_cuts=list(cuts)) if cuts else {}), indent=2))}


def read_soft_targets(run: RunDir, table: pd.DataFrame, data_dir, unlabeled: pd.DataFrame | None) -> Teaching:
    """The cached soft targets as the trainer takes them: training photos by this run's paths, unlabelled ones with
    their paths."""
    soft = pd.read_csv(run.soft_targets, dtype={"image": str})
    by_image = soft[soft["source"] == TRAIN].set_index("image")
    train_rows = by_image.loc[relative(table["path"], data_dir), PROB_COLUMNS].reset_index(drop=True)
    extra = soft[soft["source"] == UNLABELED].reset_index(drop=True)
    if unlabeled is not None:
        paths = unlabeled.set_index("ImageID").loc[extra["image"], "path"].to_numpy()
        extra = extra[PROB_COLUMNS].assign(path=paths)
    else:
        extra = extra.iloc[:0][PROB_COLUMNS].assign(path=[])
    return Teaching(train_rows.assign(path=table["path"].to_numpy()), extra)
