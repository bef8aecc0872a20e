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
from src.config.schema import InferConfig, Prediction, PseudoConfig, TrainConfig
from src.data.dataset import FaceDataset
from src.data.images import FileImages, read_rgb
from src.data.tables import load_eval, load_unlabeled
from src.engine import builders
from src.engine.forward import predict_loader, probabilities
from src.errors import ConfigError, NonFinite, RunNotFound
from src.labels import CLASS_NAMES, NUM_CLASSES, PROB_COLUMNS
from src.run.atomic import save_csv, save_text
from src.run.checkpoint import is_finished, load_weights
from src.run.figures import pyplot, save_png
from src.run.logging import setup_logging
from src.run.rundir import RunDir, prediction_files

log = logging.getLogger("maskcls")


def run_checkpoints(run: RunDir, checkpoint: str) -> list[Path]:
    """The chosen checkpoint of every finished fold; clear errors for a missing run or file."""
    if not run.exists:
        raise RunNotFound(f"run {run.root}: not found (no {run.config}); train it first")
    finished = [k for k in run.folds() if is_finished(run.last(k))]
    if not finished:
        raise RunNotFound(f"run {run.root}: no finished fold (each fold's last.pt marks it); "
                                f"finish training with --resume")
    paths = [run.checkpoint(k, checkpoint) for k in finished]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RunNotFound(f"run {run.root}: checkpoint file(s) missing: {', '.join(missing)}")
    return paths


def load_models(run_cfg: TrainConfig, checkpoints, device) -> list[torch.nn.Module]:
    models = []
    for path in checkpoints:
        model = builders.model(run_cfg, pretrained=False)  # the checkpoint holds every weight
        model.load_state_dict(load_weights(path))
        models.append(model.to(device).eval())  # the model keeps its own memory format (channels_last for conv nets)
    return models


def chosen_runs(cfg: Prediction) -> list[str]:
    runs = cfg.runs or ([cfg.run] if cfg.run else [])
    if not runs:
        raise ConfigError("name the run(s) to predict with: --run NAME or --runs NAME1 NAME2 ...")
    return runs


def predict_runs(cfg: InferConfig | PseudoConfig, runs: list[str], paths) -> np.ndarray:
    """Average of each run's fold x TTA probabilities; runs may differ in backbone and input size."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plans = []
    for name in runs:  # every run and checkpoint is checked before any model loads
        run = RunDir(cfg.log_dir, name)
        plans.append((name, run_checkpoints(run, cfg.checkpoint), policy.from_saved(run.config)))
    total = np.zeros((len(paths), NUM_CLASSES))
    for name, checkpoints, run_cfg in plans:
        amp = cfg.amp if device.type == "cuda" else "none"
        models = load_models(run_cfg, checkpoints, device)
        ds = FaceDataset(FileImages(paths, builders.work_size(run_cfg), cfg.max_image_pixels), None,
                         builders.eval_transform(run_cfg))
        loader = builders.loader(ds, cfg, device, cfg.infer_batch_size)
        log.info("run %s: %d fold model(s) from %s, %dx%d, tta=%s", name, len(models), cfg.checkpoint,
                 run_cfg.img_height, run_cfg.img_width, cfg.tta)
        _, logits = predict_loader(models, loader, device, cfg.tta, amp, desc=f"predict {name}")
        finite = torch.isfinite(logits).reshape(len(models), -1).all(1)
        if not finite.all():
            folds = [checkpoints[i].parent.name.removeprefix("fold") for i in (~finite).nonzero().flatten().tolist()]
            raise NonFinite(f"run {name} fold {', '.join(folds)}: non-finite probabilities from "
                            f"{cfg.checkpoint}.pt; nothing was written. Retrain that fold or choose another "
                            f"--checkpoint")
        total += probabilities(logits).numpy()
    return total / len(plans)


def save_preview(info: pd.DataFrame, probs: np.ndarray, path: Path, n: int = 24):
    fig, axes = pyplot().subplots(4, 6, figsize=(15, 13))
    for ax, i in zip(axes.flat, range(min(n, len(info)))):
        ax.imshow(read_rgb(info["path"].iloc[i]))
        k = int(probs[i].argmax())
        ax.set_title(f"{k} {CLASS_NAMES[k]}\n{probs[i, k]:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    save_png(fig, path, dpi=60)


def infer(cfg: InferConfig) -> Path:
    """Write the submission (rows and order of info.csv), eval_probs.csv, eval_preview.png and the
    inference settings (inference.yaml) into the run folder or beside --out."""
    setup_logging()
    runs = chosen_runs(cfg)
    info = load_eval(cfg.data_dir)
    probs = predict_runs(cfg, runs, info["path"])  # checks every run and checkpoint before loading a model
    name = runs[0] if len(runs) == 1 else "ensemble_" + "-".join(runs)
    if len(name) > 120:  # file names stop at 255 bytes: many runs get a digest instead
        name = "ensemble_" + hashlib.sha1("-".join(runs).encode()).hexdigest()[:12]
    default = RunDir(cfg.log_dir, name).submission
    files = prediction_files(Path(cfg.out) if cfg.out else default)
    save_csv(pd.DataFrame({"ImageID": info["ImageID"], "ans": probs.argmax(1).astype(int)}), files["submission"])
    probs_df = pd.concat([info[["ImageID"]], pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    save_csv(probs_df, files["probs"], float_format="%.6f")
    save_preview(info, probs, files["preview"])
    save_text(policy.dump(cfg), files["settings"])
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
    probs = predict_runs(cfg, chosen_runs(cfg), unlabeled["path"])
    df = pd.DataFrame({"path": unlabeled["path"], "label": probs.argmax(1), "confidence": probs.max(1)})
    kept = df[df["confidence"] >= cfg.pseudo_threshold]
    save_csv(kept, run.pseudo_labels, float_format="%.6f")
    save_text(policy.dump(cfg, Prediction), run.pseudo_settings)
    log.info("pseudo labels: kept %d of %d images at confidence >= %.3f -> %s", len(kept), len(df),
             cfg.pseudo_threshold, run.pseudo_labels)
    return run.pseudo_labels


def check_runs(cfg: Prediction):
    """Every run of --run/--runs exists with the chosen checkpoint of each finished fold; nothing loads."""
    for name in chosen_runs(cfg):
        run_checkpoints(RunDir(cfg.log_dir, name), cfg.checkpoint)
