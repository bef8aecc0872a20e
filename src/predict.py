"""From trained folds to probabilities: fold x TTA softmax averaging, run ensembles, the submission,
eval_probs.csv, a preview grid, and pseudo labels for unlabelled images."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from src import config as config_mod
from src.atomic import replace_with, save_csv
from src.data import FaceDataset, FileImages, load_eval, load_unlabeled
from src.engine import PROB_COLUMNS, RunExists, autocast, make_loader, setup_logging, to_device
from src.labels import CLASS_NAMES, NUM_CLASSES
from src.model import build_model
from src.transforms import eval_transform, work_size

log = logging.getLogger("maskcls")


def run_checkpoints(run_dir: Path, checkpoint: str) -> list[Path]:
    """The chosen checkpoint of every finished fold; clear errors for a missing run or file."""
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"run {run_dir}: not found (no {run_dir / 'config.yaml'}); train it first")
    finished = []
    for fold_dir in sorted(run_dir.glob("fold*")):
        last = fold_dir / "last.pt"
        # mmap: read the `finished` flag without pulling the optimizer state off disk
        if last.is_file() and torch.load(last, map_location="cpu", weights_only=True, mmap=True)["finished"]:
            finished.append(fold_dir)
    if not finished:
        raise FileNotFoundError(f"run {run_dir}: no finished fold (each fold's last.pt marks it); "
                                f"finish training with --resume")
    paths = [d / f"{checkpoint}.pt" for d in finished]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"run {run_dir}: checkpoint file(s) missing: {', '.join(missing)}")
    return paths


@torch.no_grad()
def average_probs(models, loader, cfg, device, tta: str, desc: str | None = None) -> np.ndarray:
    """Mean softmax over models x views, batch by batch; flip TTA is one doubled batch per model."""
    out = []
    for x, _, _ in tqdm(loader, desc=desc, disable=desc is None, mininterval=1):
        x = to_device(x, device, cfg.channels_last)
        if tta == "flip":
            x = torch.cat([x, x.flip(3)])
        total = torch.zeros(x.shape[0], NUM_CLASSES, device=device)
        for m in models:
            with autocast(cfg, device):
                total += F.softmax(m(x).float(), dim=1)
        views = 2 if tta == "flip" else 1
        out.append((total.view(views, -1, NUM_CLASSES).sum(0) / (views * len(models))).cpu())
    return torch.cat(out).numpy()


def load_models(run_cfg, checkpoints, device) -> list[torch.nn.Module]:
    run_cfg.pretrained = False  # the checkpoint holds every weight
    models = []
    for path in checkpoints:
        model = build_model(run_cfg)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        model = model.to(device).eval()
        models.append(model.to(memory_format=torch.channels_last) if run_cfg.channels_last else model)
    return models


def predict_runs(cfg, runs: list[str], paths) -> np.ndarray:
    """Average of each run's fold x TTA probabilities; runs may differ in backbone and input size."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plans = []
    for name in runs:  # every run and checkpoint is checked before any model loads
        run_dir = Path(cfg.log_dir) / name
        plans.append((name, run_checkpoints(run_dir, cfg.checkpoint), config_mod.from_saved(run_dir / "config.yaml")))
    total = np.zeros((len(paths), NUM_CLASSES))
    for name, checkpoints, run_cfg in plans:
        run_cfg.amp = cfg.amp if device.type == "cuda" else "none"
        models = load_models(run_cfg, checkpoints, device)
        ds = FaceDataset(FileImages(paths, work_size(run_cfg)), None, eval_transform(run_cfg))
        loader = make_loader(ds, cfg, device, cfg.infer_batch_size)
        log.info("run %s: %d fold model(s) from %s, %dx%d, tta=%s", name, len(models), cfg.checkpoint,
                 run_cfg.img_height, run_cfg.img_width, cfg.tta)
        total += average_probs(models, loader, run_cfg, device, cfg.tta, desc=f"predict {name}")
    return total / len(plans)


def chosen_runs(cfg) -> list[str]:
    runs = cfg.runs or ([cfg.run] if cfg.run else [])
    if not runs:
        raise config_mod.ConfigError("name the run(s) to predict from: --run NAME or --runs NAME1 NAME2 ...")
    return runs


def save_preview(info: pd.DataFrame, probs: np.ndarray, path: Path, n: int = 24):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.data import read_rgb

    fig, axes = plt.subplots(4, 6, figsize=(15, 13))
    for ax, i in zip(axes.flat, range(min(n, len(info)))):
        ax.imshow(read_rgb(info["path"].iloc[i]))
        k = int(probs[i].argmax())
        ax.set_title(f"{k} {CLASS_NAMES[k]}\n{probs[i, k]:.2f}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    replace_with(path, lambda tmp: fig.savefig(tmp, dpi=60, format="png"))
    plt.close(fig)


def infer(cfg) -> Path:
    """Write the submission (rows and order of info.csv), eval_probs.csv and eval_preview.png."""
    setup_logging(None, True)
    runs = chosen_runs(cfg)
    info = load_eval(cfg.data_dir)
    probs = predict_runs(cfg, runs, info["path"])  # checks every run and checkpoint before loading a model
    default_dir = Path(cfg.log_dir) / (runs[0] if len(runs) == 1 else "ensemble_" + "+".join(runs))
    out = Path(cfg.out) if cfg.out else default_dir / "submission.csv"
    save_csv(pd.DataFrame({"ImageID": info["ImageID"], "ans": probs.argmax(1).astype(int)}), out)
    probs_df = pd.concat([info[["ImageID"]], pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    save_csv(probs_df, out.parent / "eval_probs.csv", float_format="%.6f")
    save_preview(info, probs, out.parent / "eval_preview.png")
    log.info("submission %s (%d rows); probabilities %s; preview %s", out, len(info), out.parent / "eval_probs.csv",
             out.parent / "eval_preview.png")
    return out


def make_pseudo_labels(cfg) -> Path:
    """Predict unlabelled images with run `cfg.run`; keep confident ones in logs/<name>/pseudo_labels.csv."""
    setup_logging(None, True)
    if not cfg.run:
        raise config_mod.ConfigError("pseudo labelling needs --run SOURCE_RUN to predict with")
    run_dir = Path(cfg.log_dir) / cfg.name
    if (run_dir / "config.yaml").is_file():
        if cfg.overwrite:
            shutil.rmtree(run_dir)
        elif not cfg.resume:
            raise RunExists(f"{run_dir} already exists; use --resume to continue it or --overwrite to replace it")
    target = run_dir / "pseudo_labels.csv"
    if cfg.resume and target.is_file():
        return target
    unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir)
    probs = predict_runs(cfg, [cfg.run], unlabeled["path"])
    df = pd.DataFrame({"path": unlabeled["path"], "label": probs.argmax(1), "confidence": probs.max(1)})
    kept = df[df["confidence"] >= cfg.pseudo_threshold]
    save_csv(kept, target, float_format="%.6f")
    log.info("pseudo labels: kept %d of %d images at confidence >= %.3f -> %s", len(kept), len(df),
             cfg.pseudo_threshold, target)
    return target
