"""The K-fold trainer: one straight train/validate loop per fold, with early stopping, atomic
checkpoints, resume from last.pt, whole-set metrics, out-of-fold predictions and DDP via torchrun."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.utils import adaptive_clip_grad
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from src import config as config_mod
from src import dist as dist_mod
from src.atomic import save_csv, save_text, save_torch
from src.cache import image_source
from src.data import DataError, FaceDataset, Take, load_train, load_unlabeled
from src.labels import NUM_CLASSES
from src.losses import Criterion, class_weights, uda_consistency
from src.metrics import confusion, confusion_figure, confusion_text, evaluate, macro_f1
from src.model import build_model
from src.samplers import train_sampler
from src.transforms import eval_transform, train_transform, uda_transform, work_size

log = logging.getLogger("maskcls")
PROB_COLUMNS = [f"p{k}" for k in range(NUM_CLASSES)]
BEST_FILES = {"val_loss": "best_loss.pt", "val_f1": "best_f1.pt", "val_acc": "best_acc.pt"}


class NonFiniteLoss(RuntimeError):
    pass


class RunExists(RuntimeError):
    pass


class EarlyStopping:
    """Lightning-style: stop after `patience` epochs without an improvement larger than min_delta."""

    def __init__(self, monitor: str, mode: str = "auto", patience: int = 5, min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = ("min" if monitor == "val_loss" else "max") if mode == "auto" else mode
        self.best: float | None = None
        self.wait = 0

    def step(self, value: float) -> bool:
        """Record one epoch's value; True when it improved."""
        if self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.wait > 0 and self.wait >= self.patience

    def state_dict(self) -> dict:
        return dict(best=self.best, wait=self.wait)

    def load_state_dict(self, state: dict):
        self.best, self.wait = state["best"], state["wait"]


def seed_everything(seed: int, deterministic: bool):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    np_state = np.random.get_state()
    return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=[np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
                python=random.getstate())


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def default_workers(requested: int, device: torch.device | None = None) -> int:
    """`requested` if >= 0. Otherwise this process's share of the usable cores, at most 16; when the model
    itself trains on the CPU it needs the cores, so workers get half of them (measured on 2 cores: one
    worker kept the pipeline at the model-only limit, two cost 2-7%)."""
    if requested >= 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = max(cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    if device is not None and device.type == "cpu":
        cores = max(cores // 2, 1)
    return min(cores, 16)


def lower_priority(_worker_id: int):
    """On CPU the model's threads own the cores; loader workers fill the gaps instead of preempting them."""
    os.nice(10)


def make_loader(dataset, cfg, device, batch_size: int, sampler=None, drop_last=False, workers=None):
    workers = default_workers(cfg.num_workers if workers is None else workers, device)
    extra = dict(persistent_workers=True, prefetch_factor=cfg.prefetch_factor) if workers > 0 else {}
    if workers > 0 and device.type == "cpu":
        extra["worker_init_fn"] = lower_priority
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last, **extra)


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise config_mod.ConfigError(f"--optimizer {cfg.optimizer!r}; choose one of {config_mod.CHOICES['optimizer']}")


def build_scheduler(cfg, optimizer, steps_per_epoch: int):
    """(scheduler, when): when is 'batch', 'epoch', 'val_loss' or None."""
    s = cfg.scheduler
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.cosine_t_max, eta_min=cfg.eta_min), \
            "epoch"
    if s == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                   steps_per_epoch=max(steps_per_epoch, 1),
                                                   pct_start=cfg.onecycle_pct_start), "batch"
    if s == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience), "val_loss"
    if s == "none":
        return None, None
    raise config_mod.ConfigError(f"--scheduler {s!r}; choose one of {config_mod.CHOICES['scheduler']}")


def autocast(cfg, device: torch.device):
    """bf16/fp16 autocast on CUDA; on CPU AMP is off (it is slower there)."""
    if device.type == "cuda" and cfg.amp != "none":
        return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def predict_logits(model, loader, cfg, device, tta: str = "none", desc: str | None = None):
    """(dataset indices, logits of shape (N, views, 18)); flip TTA runs as one doubled batch."""
    model.eval()
    all_idx, all_logits = [], []
    for x, _, idx in tqdm(loader, desc=desc, disable=desc is None, mininterval=1, leave=False):
        x = to_device(x, device, cfg.channels_last)
        n = x.shape[0]
        if tta == "flip":
            x = torch.cat([x, x.flip(3)])
        with autocast(cfg, device):
            logits = model(x).float()
        all_logits.append(logits.view(-1, n, NUM_CLASSES).transpose(0, 1).cpu())
        all_idx.append(idx)
    return torch.cat(all_idx), torch.cat(all_logits)


@dataclass
class RunContext:
    cfg: object
    dist: dist_mod.Dist
    run_dir: Path
    table: pd.DataFrame
    images: object
    pseudo: pd.DataFrame | None = None
    pseudo_images: object = None
    unlabeled_images: object = None
    writer: object = None  # torch.utils.tensorboard.SummaryWriter on rank 0
    metrics_rows: list = field(default_factory=list)


def prepare_run_dir(cfg, dist) -> Path:
    """Refuse an existing run unless resume/overwrite; write the resolved config and git commit."""
    run_dir = Path(cfg.log_dir) / cfg.name
    exists = (run_dir / "config.yaml").is_file()
    if dist.main:
        if exists and cfg.overwrite:
            shutil.rmtree(run_dir)
            exists = False
        elif exists and not cfg.resume:
            raise RunExists(f"{run_dir} already exists; use --resume to continue it or --overwrite to replace it")
        run_dir.mkdir(parents=True, exist_ok=True)
        if not exists:
            save_text(config_mod.dump(cfg), run_dir / "config.yaml")
        elif cfg.resume:
            saved = config_mod.from_saved(run_dir / "config.yaml")
            diff = {k: (getattr(saved, k), getattr(cfg, k)) for k in config_mod.FIELDS
                    if k not in config_mod.ENTRY_FLAGS and getattr(saved, k) != getattr(cfg, k)}
            if diff:
                log.warning("resume: settings differ from the saved config.yaml: %s", diff)
    dist_mod.barrier(dist)
    return run_dir


def setup_logging(run_dir: Path | None, main: bool):
    log.handlers.clear()
    log.setLevel(logging.INFO if main else logging.WARNING)
    log.propagate = False

    class TqdmHandler(logging.StreamHandler):
        def emit(self, record):
            tqdm.write(self.format(record), file=sys.stderr)

    console = TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None and main:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(fh)


def load_pseudo(cfg) -> pd.DataFrame | None:
    """Pseudo-labelled rows (path, label, confidence) at or above pseudo_threshold."""
    if not cfg.pseudo_csv:
        return None
    path = Path(cfg.pseudo_csv)
    if not path.is_file():
        raise DataError([f"{path}: pseudo_csv not found"])
    df = pd.read_csv(path)
    missing = [c for c in ("path", "label", "confidence") if c not in df.columns]
    if missing:
        raise DataError([f"{path}: missing column(s) {', '.join(missing)}; expected path,label,confidence"])
    bad = df[~df["label"].between(0, NUM_CLASSES - 1)]
    if len(bad):
        raise DataError([f"{path} row {i + 2}: label {v} is not a class 0..17" for i, v in bad["label"].items()])
    absent = [f"{path} row {i + 2}: image {p} not found" for i, p in df["path"].items() if not Path(p).is_file()]
    if absent:
        raise DataError(absent)
    kept = df[df["confidence"] >= cfg.pseudo_threshold].reset_index(drop=True)
    log.info("pseudo labels: %d of %d rows at confidence >= %.3f from %s", len(kept), len(df),
             cfg.pseudo_threshold, path)
    return kept


def fold_datasets(ctx: RunContext, k: int):
    cfg, table = ctx.cfg, ctx.table
    seed = cfg.seed + ctx.dist.rank
    tr = np.flatnonzero(table["fold"].to_numpy() != k)
    va = np.flatnonzero(table["fold"].to_numpy() == k)
    train_labels = table["train_label"].to_numpy()[tr]
    train_ds = FaceDataset(Take(ctx.images, tr), train_labels, train_transform(cfg), seed=seed)
    if ctx.pseudo is not None and len(ctx.pseudo):
        pseudo_ds = FaceDataset(ctx.pseudo_images, ctx.pseudo["label"].to_numpy(), train_transform(cfg), seed=seed + 1)
        train_labels = np.concatenate([train_labels, ctx.pseudo["label"].to_numpy()])
        train_ds = ConcatDataset([train_ds, pseudo_ds])
    val_ds = FaceDataset(Take(ctx.images, va), table["label"].to_numpy()[va], eval_transform(cfg))
    return train_ds, train_labels, val_ds, va


def shared_image_sources(cfg, dist, table, pseudo, unlabeled):
    """Training, pseudo and unlabelled images at work size, cached as configured. Under torchrun rank 0
    builds a disk cache first and the other ranks then read it."""
    if dist.enabled and not dist.main:
        dist_mod.barrier(dist)
    workers, size = default_workers(cfg.num_workers), work_size(cfg)
    sources = [image_source(cfg, frame["path"], size, workers) if frame is not None else None
               for frame in (table, pseudo if pseudo is not None and len(pseudo) else None, unlabeled)]
    if dist.enabled and dist.main:
        dist_mod.barrier(dist)
    return sources


def set_epoch(dataset, epoch: int):
    for ds in getattr(dataset, "datasets", [dataset]):
        ds.set_epoch(epoch)


def forever(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        set_epoch(loader.dataset, epoch)
        yield from loader
        epoch += 1


def fit_fold(ctx: RunContext, k: int):
    cfg, dist, device = ctx.cfg, ctx.dist, ctx.dist.device
    fold_dir = ctx.run_dir / f"fold{k}"
    last_path = fold_dir / "last.pt"
    resume_state = torch.load(last_path, map_location="cpu", weights_only=True) if last_path.is_file() else None
    if resume_state is not None and resume_state["finished"]:
        log.info("fold %d: finished earlier, skipped", k)
        return
    if dist.main:
        fold_dir.mkdir(parents=True, exist_ok=True)

    train_ds, train_labels, val_ds, val_rows = fold_datasets(ctx, k)
    sampler = train_sampler(cfg.sampler, train_labels, dist.world, dist.rank, cfg.seed)
    train_loader = make_loader(train_ds, cfg, device, cfg.batch_size, sampler, drop_last=len(train_ds) > cfg.batch_size)
    val_shard = list(range(dist.rank, len(val_ds), dist.world))
    val_loader = make_loader(torch.utils.data.Subset(val_ds, val_shard), cfg, device, cfg.infer_batch_size)
    val_labels = torch.as_tensor(val_ds.labels)
    uda_iter = None
    if cfg.uda:
        unl_ds = FaceDataset(ctx.unlabeled_images, None, uda_transform(cfg), seed=cfg.seed + 7 + dist.rank)
        unl_sampler = train_sampler("none", np.zeros(len(unl_ds), int), dist.world, dist.rank, cfg.seed + 7)
        unl_bs = max(1, round(cfg.batch_size * cfg.uda_ratio))
        uda_iter = forever(make_loader(unl_ds, cfg, device, unl_bs, unl_sampler, drop_last=len(unl_ds) > unl_bs),
                           unl_sampler)

    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = class_weights(train_labels) if cfg.class_weights else None
    criterion = Criterion(cfg, weights).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler, sched_when = build_scheduler(cfg, optimizer, len(train_loader))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")
    stopper = EarlyStopping(cfg.early_stop_monitor, cfg.early_stop_mode, cfg.early_stop_patience,
                            cfg.early_stop_min_delta)
    best = {"val_loss": math.inf, "val_f1": -math.inf, "val_acc": -math.inf}
    start_epoch = 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume_state["scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        stopper.load_state_dict(resume_state["early_stopping"])
        best = dict(resume_state["best"])
        set_rng_state(resume_state["rng"])
        start_epoch = resume_state["epoch"] + 1
        log.info("fold %d: resumed from %s after epoch %d", k, last_path, resume_state["epoch"])
    # rows of epochs that will run (again) are dropped, so a kill between writes never duplicates one
    ctx.metrics_rows = [r for r in ctx.metrics_rows if not (r["fold"] == k and r["epoch"] >= start_epoch)]
    step_model = model
    if cfg.compile:
        step_model = torch.compile(model)
    if dist.enabled:
        step_model = DistributedDataParallel(step_model, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        set_epoch(train_ds, epoch)
        train_stats = train_one_epoch(ctx, k, epoch, step_model, criterion, optimizer, scaler, train_loader,
                                      scheduler if sched_when == "batch" else None, uda_iter)
        dist_mod.sync_buffers(dist, model)
        idx, logits = predict_logits(step_model.module if dist.enabled else step_model, val_loader, cfg, device)
        idx, logits = dist_mod.gather_rows(dist, idx, logits[:, 0])  # idx: positions in val_ds
        with torch.no_grad():
            val_loss = float(criterion(logits.to(device), val_labels[idx].to(device)))
        probs = F.softmax(logits, dim=1).numpy()
        m = evaluate(val_labels[idx].numpy(), probs)
        metrics = dict(val_loss=val_loss, val_acc=m["acc"], val_f1=m["f1"], val_f1_mask=m["f1_mask"],
                       val_f1_gender=m["f1_gender"], val_f1_age=m["f1_age"])
        lr = optimizer.param_groups[0]["lr"]
        if sched_when == "epoch":
            scheduler.step()
        elif sched_when == "val_loss":
            scheduler.step(val_loss)

        improved = {key: (val < best[key]) if key == "val_loss" else (val > best[key])
                    for key, val in metrics.items() if key in best}
        stopper.step(metrics[cfg.early_stop_monitor])
        stop = dist_mod.broadcast(dist, stopper.should_stop)
        finished = stop or epoch == cfg.epochs - 1
        cm = confusion(val_labels[idx].numpy(), probs.argmax(1))
        if dist.main:
            for key, better in improved.items():
                if better:
                    best[key] = metrics[key]
                    save_torch(dict(model=model.state_dict(), epoch=epoch, metrics=metrics, monitor=key),
                               fold_dir / BEST_FILES[key])
            if improved["val_f1"]:
                write_oof(fold_dir, ctx.table, val_rows[idx.numpy()], k, probs)
                save_confusion_png(cm, fold_dir / "confusion.png", f"fold {k} epoch {epoch} F1 {m['f1']:.4f}")
            row = dict(fold=k, epoch=epoch, lr=lr, **train_stats, **metrics, time_s=time.perf_counter() - t0,
                       best_f1=improved["val_f1"])
            record_epoch(ctx, row, cm)
            save_torch(dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                            scheduler=scheduler.state_dict() if scheduler is not None else None,
                            scaler=scaler.state_dict(), early_stopping=stopper.state_dict(), best=best,
                            epoch=epoch, rng=rng_state(), finished=finished), last_path)
        dist_mod.barrier(dist)
        if stop:
            log.info("fold %d: early stop after epoch %d (%s did not improve for %d epochs)", k, epoch,
                     cfg.early_stop_monitor, stopper.wait)
            break


def train_one_epoch(ctx, k, epoch, model, criterion, optimizer, scaler, loader, batch_scheduler, uda_iter) -> dict:
    cfg, device = ctx.cfg, ctx.dist.device
    model.train()
    sums = torch.zeros(3, device=device)  # total, supervised, consistency
    preds, targets = [], []
    n = 0
    bar = tqdm(loader, desc=f"fold {k} epoch {epoch}", disable=not ctx.dist.main, mininterval=1, leave=False)
    for step, (x, y, _) in enumerate(bar):
        x, y = to_device(x, device, cfg.channels_last), y.to(device, non_blocking=True)
        with autocast(cfg, device):
            if uda_iter is not None:
                u = next(uda_iter)[0].to(device, non_blocking=True)
                views = u.transpose(0, 1).flatten(0, 1)  # weak batch then strong batch
                logits_all = model(to_device(torch.cat([x, views]), device, cfg.channels_last))
                logits = logits_all[:len(x)]
                weak, strong = logits_all[len(x):].chunk(2)
                sup = criterion(logits, y)
                cons = uda_consistency(weak, strong, cfg.uda_temperature, cfg.uda_threshold)
                loss = sup + cfg.uda_weight * cons
            else:
                logits = model(x)
                loss = sup = criterion(logits, y)
                cons = torch.zeros((), device=device)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            if cfg.grad_clip_mode == "agc":
                adaptive_clip_grad(model.parameters(), clip_factor=cfg.grad_clip)
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if batch_scheduler is not None:
            batch_scheduler.step()
        sums += torch.stack([loss.detach(), sup.detach(), cons.detach()]).float() * len(x)
        n += len(x)
        preds.append(logits.detach().argmax(1).cpu())
        targets.append(y.cpu())
        if step % 10 == 0 or step == len(loader) - 1:
            check_finite(sums[0], k, epoch, step)
            bar.set_postfix(loss=f"{sums[0].item() / n:.4f}", f1=f"{macro_f1(torch.cat(targets), torch.cat(preds)):.3f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    check_finite(sums[0], k, epoch, len(loader))
    total, sup, cons = (sums / max(n, 1)).tolist()
    out = dict(train_loss=total, train_f1=macro_f1(torch.cat(targets), torch.cat(preds)) if n else 0.0)
    if cfg.uda:
        out.update(train_sup_loss=sup, train_uda_loss=cons)
    return out


def check_finite(loss_sum: torch.Tensor, k: int, epoch: int, step: int):
    if not torch.isfinite(loss_sum):
        raise NonFiniteLoss(f"fold {k} epoch {epoch}: the training loss became {loss_sum.item()} by step {step}; "
                            f"the fold stopped and its earlier checkpoints are intact. "
                            f"Try a lower --lr, --grad_clip 1, or --amp none.")


def write_oof(fold_dir: Path, table: pd.DataFrame, rows, k: int, probs: np.ndarray):
    df = pd.DataFrame({"path": table["path"].to_numpy()[rows], "label": table["label"].to_numpy()[rows], "fold": k,
                       "pred": probs.argmax(1)})
    df = pd.concat([df, pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)
    save_csv(df, fold_dir / "oof.csv", float_format="%.6f")


def save_confusion_png(cm, path: Path, title: str):
    import matplotlib.pyplot as plt

    fig = confusion_figure(cm, title)
    save_path = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(save_path, dpi=80)
    plt.close(fig)
    os.replace(save_path, path)


def record_epoch(ctx: RunContext, row: dict, cm: np.ndarray):
    ctx.metrics_rows.append(row)
    save_csv(pd.DataFrame(ctx.metrics_rows), ctx.run_dir / "metrics.csv", float_format="%.6g")
    k, epoch = row["fold"], row["epoch"]
    for key, value in row.items():
        if key not in ("fold", "epoch", "best_f1"):
            ctx.writer.add_scalar(f"fold{k}/{key}", value, epoch)
    import matplotlib.pyplot as plt

    fig = confusion_figure(cm, f"fold {k} epoch {epoch}")
    ctx.writer.add_figure(f"fold{k}/confusion", fig, epoch)
    plt.close(fig)
    ctx.writer.flush()
    log.info("fold %d epoch %d  lr %.2e  train_loss %.4f  val_loss %.4f  val_acc %.4f  val_f1 %.4f  "
             "(mask %.3f gender %.3f age %.3f)  %.0fs", k, epoch, row["lr"], row["train_loss"], row["val_loss"],
             row["val_acc"], row["val_f1"], row["val_f1_mask"], row["val_f1_gender"], row["val_f1_age"],
             row["time_s"])
    log.info("confusion matrix (rows true, columns predicted):\n%s", confusion_text(cm))


def write_cv(run_dir: Path, n_folds: int) -> dict:
    """cv.json: macro-F1 of each finished fold's OOF rows and of all OOF rows together."""
    parts = [pd.read_csv(p) for k in range(n_folds) if (p := run_dir / f"fold{k}" / "oof.csv").is_file()]
    if not parts:
        return {}
    oof = pd.concat(parts, ignore_index=True)
    probs = oof[PROB_COLUMNS].to_numpy()
    folds = {int(k): evaluate(g["label"], g[PROB_COLUMNS].to_numpy())["f1"] for k, g in oof.groupby("fold")}
    cv = dict(cv_f1=evaluate(oof["label"], probs)["f1"], fold_f1=folds, **{
        f"cv_{k}": v for k, v in evaluate(oof["label"], probs).items() if k != "f1"}, oof_rows=len(oof))
    save_text(json.dumps(cv, indent=2), run_dir / "cv.json")
    return cv


def train(cfg) -> dict:
    """Train the configured folds into logs/<name>/; returns the cv.json contents."""
    dist = dist_mod.setup(cfg.dist_backend)
    try:
        setup_logging(None, dist.main)
        table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
        pseudo = load_pseudo(cfg)
        unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir) if cfg.uda else None
        run_dir = prepare_run_dir(cfg, dist)
        setup_logging(run_dir, dist.main)
        seed_everything(cfg.seed + dist.rank, cfg.deterministic)
        log.info("run %s  commit %s  device %s  world %d\n%s", run_dir, config_mod.git_commit()[0], dist.device,
                 dist.world, config_mod.dump(cfg))
        if dist.device.type != "cuda" and cfg.amp != "none":
            log.info("amp=%s applies on CUDA only; this run uses fp32 on %s", cfg.amp, dist.device)
        log.info("data: %d images of %d people; class counts (training labels) %s", len(table),
                 table["person_id"].nunique(), np.bincount(table["train_label"], minlength=NUM_CLASSES).tolist())
        images, pseudo_images, unlabeled_images = shared_image_sources(cfg, dist, table, pseudo, unlabeled)
        ctx = RunContext(cfg, dist, run_dir, table, images, pseudo, pseudo_images, unlabeled_images)
        if dist.main:
            from torch.utils.tensorboard import SummaryWriter  # imported here: inference and benchmarks skip it

            ctx.writer = SummaryWriter(str(run_dir / "tb"))
            if (run_dir / "metrics.csv").is_file():
                ctx.metrics_rows = pd.read_csv(run_dir / "metrics.csv").to_dict("records")
        folds = range(cfg.n_folds) if cfg.fold == "all" else [int(cfg.fold)]
        for k in folds:
            fit_fold(ctx, k)
        cv = write_cv(run_dir, cfg.n_folds) if dist.main else {}
        if cv:
            log.info("CV macro-F1 %.4f over %d out-of-fold images; per fold %s", cv["cv_f1"], cv["oof_rows"],
                     {k: round(v, 4) for k, v in cv["fold_f1"].items()})
        if ctx.writer is not None:
            ctx.writer.close()
        return cv
    finally:
        dist_mod.cleanup()
