"""From trained folds to probabilities: fold x TTA softmax averaging, run ensembles, the submission,
eval_probs.csv, a preview grid, and pseudo labels for unlabelled images."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from src.config import policy
from src.config.schema import InferConfig, Prediction, PseudoConfig
from src.data.dataset import FaceDataset
from src.data.images import read_rgb
from src.data.tables import load_eval, load_unlabeled
from src.engine import builders
from src.errors import ConfigError
from src.files import real, shown
from src.labels import CLASS_NAMES
from src.predict import offsets
from src.predict.engines import predict_run, run_engine
from src.predict.grouping import find_people, person_metric
from src.predict.plans import RunPlan, reading_runs
from src.predictions import Predictions
from src.run import tracking
from src.run.atomic import check_writable, csv_writer, remove_stale_tmp, replace_together, save_csv, save_text, text_writer
from src.run.figures import png_writer, pyplot
from src.run.logging import setup_logging
from src.run.rundir import CONFIG, PREDICTION_NAMES, RUN_FILES, RunDir, prediction_files

log = logging.getLogger("maskcls")


def open_engines(cfg: InferConfig | PseudoConfig, plans: list[RunPlan], device: torch.device) -> list:
    """Every run's engine, before any photo is predicted: each checkpoint read, each graph exported or its cache's
    digest checked, so that a bad one is said before the minutes of the others' predictions."""
    return [run_engine(plan, cfg, device) for plan in plans]


def predict_runs(cfg: InferConfig | PseudoConfig, plans: list[RunPlan], engines: list, paths,
                 device: torch.device) -> Predictions:
    """The mean of each run's fold x TTA Predictions; runs may differ in backbone and input size."""
    parts = []
    for plan, engine in zip(plans, engines):
        ds = FaceDataset(builders.file_images(plan.cfg, paths, cfg.log_dir, cfg.max_image_pixels), None,
                         builders.eval_transform(plan.cfg))
        parts.append(predict_run(engine, ds, cfg, device, desc=f"predict {plan.name}")[2])
    return Predictions.mean(parts)


def predict_and_decide(cfg: InferConfig | PseudoConfig, plans: list[RunPlan], paths):
    """(Predictions, classes, what the settings record of the decision, the grouping) of the photos at `paths`.
    Every input of the runs is read and checked first (decision.json, people.npz, checkpoints, exports), in that
    order, cheapest first: a bad one is the first and only line."""
    prepared = offsets.prepare(cfg.decision, plans, grouped=cfg.group == "people")
    metric = person_metric(cfg.group, plans)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    engines = open_engines(cfg, plans, device)
    pred = predict_runs(cfg, plans, engines, paths, device)
    found = find_people(metric, paths, pred.probs, cfg.max_image_pixels, cfg.num_workers)
    classes, decided = offsets.classify(prepared, pred, found)
    return pred, classes, decided, found


def output_files(cfg: InferConfig, plans: list[RunPlan]) -> dict[str, Path]:
    """The submission (--out, or the run's own) and the files beside it, once every rule holds: nothing inside
    data_dir, no folder, no input of this prediction, nothing of a run that is not predicting, no run file
    replaced; the folder writable. Temp files of a killed infer there are cleaned (or its moves completed)."""
    runs = [plan.name for plan in plans]
    name = runs[0] if len(runs) == 1 else "ensemble_" + "-".join(runs)
    if len(name) > 120:  # file names stop at 255 bytes: many runs get a digest instead
        name = "ensemble_" + hashlib.sha1("-".join(runs).encode()).hexdigest()[:12]
    out = Path(cfg.out) if cfg.out else RunDir(cfg.log_dir, name).submission
    what = f"--out {shown(cfg.out)}" if cfg.out else f"the submission {out}"
    if out.is_dir():
        raise ConfigError(f"{what} is a folder; give the submission's file name, for example {out / 'submission.csv'}")
    files = prediction_files(out)
    data = real(cfg.data_dir)
    inputs = {real(p): f"checkpoint of run {plan.name}" for plan in plans for p in plan.checkpoints}
    inputs |= {real(plan.run.config): f"settings of run {plan.name}" for plan in plans}
    inputs |= {real(plan.cfg.corrections): "the corrections file" for plan in plans
               if plan.cfg.corrections.lower() != "none"}
    own = {real(plan.run.root) for plan in plans}
    for path in files.values():
        resolved = real(path)
        if resolved.is_relative_to(data):
            raise ConfigError(f"{what}: {path} would lie inside data_dir {cfg.data_dir}; predictions never go into "
                              f"the data")
        if resolved in inputs:
            raise ConfigError(f"{what}: {path} is the {inputs[resolved]}, an input of this prediction; choose another name")
        if path.is_dir():
            raise ConfigError(f"{what}: {path} is a folder; choose another name")
        folder = resolved.parent
        if (folder / CONFIG).is_file() and folder not in own:
            raise ConfigError(f"{what}: {path} would lie in the folder of run {folder.name}, which is not predicting; "
                              f"choose another place")
        if folder in own and path.name in RUN_FILES and path.name not in PREDICTION_NAMES:
            raise ConfigError(f"{what}: {path} would replace run {folder.name}'s own {path.name}; choose another name")
    check_writable(out.parent)
    remove_stale_tmp(out.parent)
    return files


def preview_figure(info: pd.DataFrame, probs: np.ndarray, classes: np.ndarray, n: int = 24):
    """The first n eval images with their predicted class and its probability."""
    fig, axes = pyplot().subplots(4, 6, figsize=(15, 13))
    for ax, i in zip(axes.flat, range(min(n, len(info)))):
        ax.imshow(read_rgb(info["path"].iloc[i]))
        k = int(classes[i])
        ax.set_title(f"{k} {CLASS_NAMES[k]}\n{probs[i, k]:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def infer(cfg: InferConfig) -> Path:
    """Write the submission (rows and order of info.csv), eval_probs.csv, eval_preview.png and the
    inference settings (inference.yaml) into the run folder, or X.probs.csv, X.preview.png and X.yaml beside
    --out X.csv: all four new, or all four as they were."""
    setup_logging()
    trackers = tracking.check(cfg)  # a tracker that cannot be reached or written, before any prediction
    with reading_runs(cfg) as plans:  # every run and checkpoint is checked before any model loads
        files = output_files(cfg, plans)  # and every output rule, before the data is read
        submission = write_submission(cfg, load_eval(cfg.data_dir), plans, files)
        # tracked runs (and --tracker) get the submission's digest and its settings file
        tracking.add_outputs(trackers, [plan.run for plan in plans], "infer",
                             dict(submission=files["submission"], settings=files["settings"]))
        return submission


def write_submission(cfg: InferConfig, info: pd.DataFrame, plans: list[RunPlan], files: dict[str, Path]) -> Path:
    pred, classes, decided, found = predict_and_decide(cfg, plans, info["path"])
    submission = pd.DataFrame({"ImageID": info["ImageID"], "ans": classes.astype(int)})
    probs_df = pd.concat([info[["ImageID"]], pred.table()], axis=1).assign(group=found.groups)  # -1: decided alone
    folds = {plan.name: dict(used=plan.folds, checkpoint=plan.checkpoint,
                             still_training={k: who for k, who in plan.training.items()}) for plan in plans}
    replace_together({files["probs"]: csv_writer(probs_df, float_format="%.6g"),
                      files["preview"]: png_writer(preview_figure(info, pred.probs, classes), dpi=60),
                      files["settings"]: text_writer(policy.dump(cfg, extra=dict(folds=folds, decision=decided,
                                                                                  grouping=found.record()))),
                      files["submission"]: csv_writer(submission)})
    log.info("submission %s (%d rows); probabilities %s; preview %s; settings %s", files["submission"], len(info),
             files["probs"], files["preview"], files["settings"])
    return files["submission"]


def make_pseudo_labels(cfg: PseudoConfig, run: RunDir) -> Path:
    """Predict unlabelled images with the runs of --run/--runs; keep confident ones in the run's
    pseudo_labels.csv (with the settings that made them in pseudo_labels.yaml). On resume, reuse them."""
    if cfg.resume and run.pseudo_labels.is_file():
        log.info("pseudo labels: reusing %s", run.pseudo_labels)
        return run.pseudo_labels
    unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir)
    with reading_runs(cfg) as plans:
        pred, labels, _, found = predict_and_decide(cfg, plans, unlabeled["path"])
    df = pd.DataFrame({"path": unlabeled["path"], "label": labels,
                       "confidence": pred.probs[np.arange(len(labels)), labels]})
    kept = df[df["confidence"] >= cfg.pseudo_threshold]
    save_csv(kept, run.pseudo_labels, float_format="%.6g")
    save_text(policy.dump(cfg, Prediction, extra=dict(checkpoints={p.name: p.checkpoint for p in plans},
                                                      grouping=found.record())),
              run.pseudo_settings)
    log.info("pseudo labels: kept %d of %d images at confidence >= %.3f -> %s", len(kept), len(df),
             cfg.pseudo_threshold, run.pseudo_labels)
    return run.pseudo_labels
