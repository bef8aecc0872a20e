"""The K-fold trainer: one straight train/validate loop per fold, with early stopping, atomic checkpoints,
resume from last.pt, whole-set metrics, out-of-fold predictions and DDP via torchrun."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, Subset
from tqdm import tqdm

from src import seeds
from src.config import policy
from src.config.schema import AgeSpan, TrainConfig
from src.data.appearance import appearance
from src.data.dataset import FaceDataset, Take
from src.data.loaders import default_workers, forever, set_epoch
from src.data.samplers import train_sampler
from src.data.tables import load_pseudo, load_train, load_unlabeled, with_saved_folds
from src.engine import builders
from src.engine import dist as dist_mod
from src.engine.forward import predict_loader, split_years
from src.engine.optim import build_optimizer, build_scheduler
from src.engine.step import TrainStep
from src.engine.stopping import EarlyStopping
from src.errors import ConfigError, Interrupted, NonFinite, interruptible, stop_if_signalled
from src.model.age import NUMBER_HEADS
from src.labels import BAND_CUTS, NUM_CLASSES, target_label
from src.metrics import evaluate, macro_f1
from src.run import tracking
from src.run.atomic import check_writable, save_csv, save_text
from src.run.checkpoint import FOR_RESUME, read, rng_state
from src.run.logging import FILE_ONLY, setup_logging
from src.run.records import PhotoPeople, RunRecords
from src.run.rundir import RunDir
from src.run.saver import FoldObjects, FoldSaver, Validated, saved_state

log = logging.getLogger("maskcls")


@dataclass
class RunInputs:
    """What every fold of a run shares: its data, image sources and writers."""
    cfg: TrainConfig
    dist: dist_mod.Dist
    run: RunDir
    table: pd.DataFrame
    images: object
    pseudo: pd.DataFrame | None = None
    pseudo_images: object = None
    unlabeled_images: object = None
    records: RunRecords | None = None  # rank 0 only
    progress: Progress = field(default_factory=lambda: Progress())  # updated by fit_fold
    after_epoch: Callable[[int, int, dict, bool], None] | None = None  # (fold, epoch, metrics, fold's last epoch), rank 0, after last.pt; metrics are {} on an epoch not validated


@dataclass
class Progress:
    """Where training is, for the line an interruption prints: the fold, its epoch, and its last.pt."""
    fold: int | None = None
    epoch: int = 0
    last: Path | None = None

    def stopped(self, signal_name: str) -> str:
        if self.fold is None:
            return f"interrupted ({signal_name}) before a fold started; nothing of the run's training was lost"
        saved = read(self.last, FOR_RESUME, mmap=True)["epoch"] if self.last and self.last.is_file() else None
        kept = f"last.pt (epoch {saved}) is intact" if saved is not None else "no epoch of it was saved yet"
        return f"interrupted ({signal_name}) in fold {self.fold}, epoch {self.epoch}: {kept}; continue with --resume"


def dropped(table: pd.DataFrame, drop_ages: str) -> np.ndarray:
    """Rows of people whose age drop_ages names: they never train, but validate in their fold."""
    span = AgeSpan.bounds(drop_ages)
    return table["age"].between(*span).to_numpy() if span else np.zeros(len(table), dtype=bool)


def fold_datasets(cfg: TrainConfig, table: pd.DataFrame, images, k: int, rank: int = 0, pseudo=None,
                  pseudo_images=None):
    """(train dataset, its labels, validation dataset, validation rows of `table`) of fold k.
    Pseudo-labelled rows only ever join the training side."""
    seed = seeds.fold_seed(cfg.seed, k, rank)
    folds = table["fold"].to_numpy()
    tr, va = np.flatnonzero((folds != k) & ~dropped(table, cfg.drop_ages)), np.flatnonzero(folds == k)
    train_labels = table["train_label"].to_numpy()[tr]
    # a number age head learns the exact age; the age filter's "60+" (age >= age_filter) is 60 there too
    ages = np.where(table["age"] >= cfg.age_filter, BAND_CUTS[1], table["age"]).astype(int)[tr] \
        if cfg.age_head in NUMBER_HEADS else None
    train_ds = FaceDataset(Take(images, tr), train_labels, builders.train_transform(cfg), seed=seed, ages=ages)
    if pseudo is not None and len(pseudo):
        pseudo_ds = FaceDataset(pseudo_images, pseudo["label"].to_numpy(), builders.train_transform(cfg),
                                seed=seeds.pseudo_seed(seed))
        train_labels = np.concatenate([train_labels, pseudo["label"].to_numpy()])
        train_ds = ConcatDataset([train_ds, pseudo_ds])
    val_ds = FaceDataset(Take(images, va), table["label"].to_numpy()[va], builders.eval_transform(cfg))
    return train_ds, train_labels, val_ds, va


def shared_image_sources(cfg: TrainConfig, dist, table, pseudo, unlabeled):
    """Training, pseudo and unlabelled images at work size, cached as configured. Under torchrun rank 0
    builds a disk cache first and the other ranks then read it."""
    if dist.enabled and not dist.main:
        dist_mod.barrier(dist)
    workers, size = default_workers(cfg.num_workers), builders.work_size(cfg)
    sources = [builders.images(cfg, frame["path"], size, workers) if frame is not None else None
               for frame in (table, pseudo if pseudo is not None and len(pseudo) else None, unlabeled)]
    if dist.enabled and dist.main:
        dist_mod.barrier(dist)
    return sources


def check_finite(loss_sum: torch.Tensor, k: int, epoch: int, step: int):
    if not torch.isfinite(loss_sum):
        raise NonFinite(f"fold {k} epoch {epoch}: the training loss became {loss_sum.item()} by step {step}; "
                            f"the fold stopped and its earlier checkpoints are intact. "
                            f"Try a lower --lr, --grad_clip 1, or --amp none.")


def train_epoch(step: TrainStep, loader, k: int, epoch: int, batch_scheduler, uda_iter, show: bool) -> dict:
    """One pass over the training loader; losses and F1 over the whole epoch."""
    step.model.train()
    sums = torch.zeros(3, device=step.device)  # total, supervised, consistency
    preds, targets = [], []
    n = 0
    bar = tqdm(loader, desc=f"fold {k} epoch {epoch}", disable=not show, mininterval=1, leave=False)
    for i, (x, y, _) in enumerate(bar):
        stop_if_signalled()
        loss, sup, cons, logits = step(x, y, next(uda_iter)[0] if uda_iter is not None else None)
        if batch_scheduler is not None:
            batch_scheduler.step()
        sums += torch.stack([loss, sup, cons]).float() * len(x)
        n += len(x)
        preds.append(logits.argmax(1).cpu())
        targets.append(target_label(y))
        if i % 10 == 0 or i == len(loader) - 1:
            check_finite(sums[0], k, epoch, i)
            bar.set_postfix(loss=f"{sums[0].item() / n:.4f}", f1=f"{macro_f1(torch.cat(targets), torch.cat(preds)):.3f}",
                            lr=f"{step.optimizer.param_groups[0]['lr']:.2e}")
    check_finite(sums[0], k, epoch, len(loader))
    total, sup, cons = (sums / max(n, 1)).tolist()
    out = dict(train_loss=total, train_f1=macro_f1(torch.cat(targets), torch.cat(preds)) if n else 0.0)
    if uda_iter is not None:
        out.update(train_sup_loss=sup, train_uda_loss=cons)
    return out


VAL_METRICS = ("val_loss", "val_acc", "val_f1", "val_f1_mask", "val_f1_gender", "val_f1_age")  # validation_pass's


def validation_pass(model, loader, labels: torch.Tensor, criterion, amp: str, dist, k: int, epoch: int) -> tuple:
    """(positions in the validation set, probabilities, the age in years of a number age head or None, metrics) over
    the whole set, every rank's shard. Non-finite results stop the fold before anything of the epoch is saved."""
    idx, outputs = predict_loader([model], loader, dist.device, tta="none", amp=amp)  # no TTA in validation
    idx, outputs = dist_mod.gather_rows(dist, idx, outputs[0])
    logits, years = split_years(outputs)
    y = labels[idx]
    with torch.no_grad():
        val_loss = float(criterion(logits.to(dist.device), y.to(dist.device)))
    probs = F.softmax(logits, dim=1).numpy()
    years = years.numpy() if years is not None else None
    if not (math.isfinite(val_loss) and np.isfinite(probs).all() and (years is None or np.isfinite(years).all())):
        raise NonFinite(f"fold {k} epoch {epoch}: the validation loss is {val_loss} and "
                            f"{int((~np.isfinite(probs)).any(1).sum())} of {len(probs)} images have non-finite "
                            f"probabilities; the fold stopped unfinished, nothing of this epoch was saved. "
                            f"Try a lower --lr, --grad_clip 1, or --amp none.")
    m = evaluate(y.numpy(), probs)
    values = (val_loss, m["acc"], m["f1"], m["f1_mask"], m["f1_gender"], m["f1_age"])
    return idx.numpy(), probs, years, dict(zip(VAL_METRICS, values))


@dataclass
class Fold:
    """One fold's data and training objects (build_fold)."""
    k: int
    train_ds: object
    sampler: object
    train_loader: object
    val_loader: object
    val_labels: torch.Tensor
    val_rows: np.ndarray  # rows of the run's table, in val_loader's order
    unl_loader: object  # the unlabelled stream of UDA, or None
    unl_sampler: object
    criterion: torch.nn.Module
    sched_when: str  # when the scheduler steps: batch, epoch, val_loss (or never)
    eval_model: torch.nn.Module  # the weights that validate, are saved as best_* and predict
    objects: FoldObjects  # what last.pt holds


def unlabeled_loader(ins: RunInputs, seed: int) -> tuple:
    """(loader, sampler) of UDA's unlabelled images: its own seed, the same on every fold."""
    cfg, dist = ins.cfg, ins.dist
    unl_seed = seeds.unlabeled_seed(cfg.seed)
    unl_ds = FaceDataset(ins.unlabeled_images, None, builders.uda_transform(cfg),
                         seed=seeds.unlabeled_seed(cfg.seed, dist.rank))
    unl_sampler = train_sampler("none", np.zeros(len(unl_ds), int), dist.world, dist.rank, unl_seed)
    unl_bs = max(1, round(cfg.batch_size * cfg.uda_ratio))
    return builders.loader(unl_ds, cfg, dist.device, unl_bs, unl_sampler, drop_last=len(unl_ds) > unl_bs,
                           seed=seed), unl_sampler


def build_fold(ins: RunInputs, k: int) -> Fold:
    """Fold k's datasets, loaders and training objects, drawn in one fixed order from the fold's seed."""
    cfg, dist, device = ins.cfg, ins.dist, ins.dist.device
    seed = seeds.fold_seed(cfg.seed, k, dist.rank)
    train_ds, train_labels, val_ds, val_rows = fold_datasets(cfg, ins.table, ins.images, k, dist.rank, ins.pseudo,
                                                             ins.pseudo_images)
    sampler = train_sampler(cfg.sampler, train_labels, dist.world, dist.rank, cfg.seed)
    train_loader = builders.loader(train_ds, cfg, device, cfg.batch_size, sampler,
                                   drop_last=len(train_ds) > cfg.batch_size, seed=seed)
    val_loader = builders.loader(Subset(val_ds, range(dist.rank, len(val_ds), dist.world)), cfg, device,
                                 cfg.infer_batch_size, seed=seed)
    unl_loader, unl_sampler = unlabeled_loader(ins, seed) if cfg.uda else (None, None)
    model = builders.model(cfg).to(device)
    criterion = builders.criterion(cfg, train_labels).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler, sched_when = build_scheduler(cfg, optimizer, len(train_loader))
    stopper = EarlyStopping(cfg.early_stop_monitor, cfg.early_stop_mode, cfg.early_stop_patience,
                            cfg.early_stop_min_delta)
    forward_model = builders.forward_model(cfg, model)
    ema = builders.ema(cfg, model)
    step = builders.train_step(
        cfg, DistributedDataParallel(forward_model, device_ids=[device.index] if device.type == "cuda" else None)
        if dist.enabled else forward_model, criterion, optimizer, device, ema, model)
    # the weights that validate, are saved as best_* and predict: the average when there is one
    eval_model, kept = (ema.module, ema.module) if ema is not None else (forward_model, model)
    return Fold(k, train_ds, sampler, train_loader, val_loader, torch.as_tensor(val_ds.labels), val_rows, unl_loader,
                unl_sampler, criterion, sched_when, eval_model,
                FoldObjects(model=model, optimizer=optimizer, scheduler=scheduler, step=step, stopper=stopper, ema=ema,
                            kept=kept))


def fit_fold(ins: RunInputs, k: int):
    """Build, restore, loop (train, validate, save), stop."""
    cfg, dist, run = ins.cfg, ins.dist, ins.run
    state = saved_state(run, k)
    if state is not None and state.finished:
        log.info("fold %d: finished earlier, skipped", k)
        return
    if dist.main:
        run.fold(k).mkdir(parents=True, exist_ok=True)
    # each fold starts from its own seed: the same weights whether it trains alone, after other folds, or again
    seeds.seed_everything(seeds.fold_seed(cfg.seed, k, dist.rank), cfg.deterministic)
    fold = build_fold(ins, k)
    saver = FoldSaver(run, k, fold.objects, oof_from=cfg.oof_from, records=ins.records, writes=dist.main)
    start_epoch = saver.resume(state, steps_per_epoch=len(fold.train_loader), rank=dist.rank, world=dist.world,
                               network=f"model {cfg.model}, heads {cfg.heads}")
    if state is not None and start_epoch >= cfg.epochs:  # resumed with fewer epochs than it already ran
        # the saved epoch becomes the fold's last; it is validated now (val_every may have skipped it), so the fold
        # ends with its oof.csv and best_* files as if it had stopped there
        saver.finish_saved(state, validate(ins, fold, state.epoch))
        log.info("fold %d: already ran %d epochs (%d asked); validated epoch %d and marked finished", k, start_epoch,
                 cfg.epochs, state.epoch)
        dist_mod.barrier(dist)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if fit_epoch(ins, fold, saver, epoch):
                break
    finally:
        saver.wait()  # however the loop ended, its last writes are done before the fold's lock is released
    saver.end()


def validate(ins: RunInputs, fold: Fold, epoch: int) -> Validated:
    """The validation pass of an epoch over the fold's validation rows (every rank's shard, gathered)."""
    idx, probs, years, metrics = validation_pass(fold.eval_model, fold.val_loader, fold.val_labels, fold.criterion,
                                                 ins.cfg.amp, ins.dist, fold.k, epoch)
    rows = fold.val_rows[idx]
    return Validated(paths=ins.table["path"].to_numpy()[rows], labels=ins.table["label"].to_numpy()[rows],
                     probs=probs, metrics=metrics, years=years,
                     ages=ins.table["age"].to_numpy()[rows] if years is not None else None)


def train_pass(ins: RunInputs, fold: Fold, epoch: int) -> dict:
    """The epoch's training pass, and the buffers made the same on every rank."""
    fold.sampler.set_epoch(epoch)
    set_epoch(fold.train_ds, epoch)
    # the unlabelled stream of each epoch starts afresh from the epoch number, so a resume replays it
    uda_iter = (forever(fold.unl_loader, fold.unl_sampler, seeds.unlabeled_epoch(epoch))
                if fold.unl_loader is not None else None)
    o = fold.objects
    stats = train_epoch(o.step, fold.train_loader, fold.k, epoch, o.scheduler if fold.sched_when == "batch" else None,
                        uda_iter, ins.dist.main)
    dist_mod.sync_buffers(ins.dist, o.model)
    if o.ema is not None:
        dist_mod.sync_buffers(ins.dist, o.ema.module)
    return stats


def fit_epoch(ins: RunInputs, fold: Fold, saver: FoldSaver, epoch: int) -> bool:
    """Train, validate where due, step the scheduler, save (rank 0), then the sweep's hook; whether the fold stops."""
    cfg, dist, o = ins.cfg, ins.dist, fold.objects
    ins.progress.epoch = epoch
    saver.check()  # the previous epoch's files could not be written: stop before training another
    t0 = time.perf_counter()
    train_stats = train_pass(ins, fold, epoch)
    # a stopper already due (patience lowered on resume) may end the fold here, so this epoch validates too
    due = (epoch + 1) % cfg.val_every == 0 or epoch == cfg.epochs - 1 or o.stopper.should_stop
    validated = validate(ins, fold, epoch) if due else None
    metrics = validated.metrics if validated is not None else {}
    if validated is not None:
        o.stopper.step(metrics[cfg.early_stop_monitor])
    lr = o.optimizer.param_groups[0]["lr"]
    if fold.sched_when == "epoch":
        o.scheduler.step()
    elif fold.sched_when == "val_loss" and validated is not None:
        o.scheduler.step(metrics["val_loss"])
    stop = dist_mod.broadcast(dist, o.stopper.should_stop)
    rngs = dist_mod.gather_objects(dist, rng_state())  # every rank's, so a DDP resume is exact too
    last = stop or epoch == cfg.epochs - 1
    values = dict(lr=lr, **train_stats, **(dict.fromkeys(VAL_METRICS, math.nan) | metrics),
                  time_s=time.perf_counter() - t0)
    saver.save_epoch(epoch, values, validated, last=last, rngs=rngs)
    if dist.main and ins.after_epoch is not None:
        ins.after_epoch(fold.k, epoch, metrics, last)
    dist_mod.barrier(dist)
    if stop:
        log.info("fold %d: early stop after epoch %d (%s did not improve for %d epochs)", fold.k, epoch,
                 cfg.early_stop_monitor, o.stopper.wait)
    return stop


def saved_any_epoch(run: RunDir, n_folds: int) -> bool:
    """Whether a fold of the run has a last.pt, or a trainer at work that may write one."""
    return any(run.last(k).is_file() for k in run.folds()) or bool(run.training_folds(n_folds))


def same_start(run: RunDir, cfg: TrainConfig, table: pd.DataFrame) -> bool:
    """Whether a run folder holds these settings (what a resume may not change) and these people's folds."""
    try:
        if policy.resume_conflicts(policy.from_saved(run.config), cfg):
            return False
        people = set(pd.read_csv(run.folds_csv, dtype={"person_id": str})["person_id"])
    except (ConfigError, OSError, ValueError, KeyError):
        return False
    return people == set(table["person_id"])


def open_run(cfg: TrainConfig, dist, table: pd.DataFrame) -> tuple[RunDir, pd.DataFrame, TrainConfig]:
    """Claim the run name (RunDir's rule). A new run saves its fold assignment and settings; a resumed run, or a
    process joining a run that another just created, must have the same settings (policy.MAY_CHANGE_ON_RESUME
    aside) and takes the saved folds and seed. Returns the run, the table with its folds, and the settings resolved
    (a copy with the run's seed)."""
    run = RunDir(cfg.log_dir, cfg.name)

    def prepare(_how: str):
        if run.exists and not saved_any_epoch(run, cfg.n_folds) and not same_start(run, cfg, table):
            # a run that failed before its first epoch holds nothing to continue: --resume starts it afresh. One whose
            # settings and people are these is kept: another process may have just made it and be about to train
            log.info("run %s: no epoch was saved yet, so it starts again with these settings", run.name)
            for path in (run.config, run.folds_csv):
                path.unlink(missing_ok=True)
        if run.exists:
            conflicts = policy.resume_conflicts(policy.from_saved(run.config), cfg)
            if conflicts:
                raise ConfigError(
                    f"{run.config}: this run was made with other settings, which --resume may not change: "
                    + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in conflicts.items())
                    + "; use the saved values, or train a new run with another --name")
        if not run.folds_csv.is_file():
            people = table.groupby("person_id", sort=False)["fold"].first().reset_index()
            save_csv(people, run.folds_csv)
        if not run.exists:
            save_text(policy.dump(cfg, TrainConfig), run.config)

    if dist.main:
        run.claim(cfg.resume, cfg.overwrite, prepare)
    dist_mod.barrier(dist)
    saved_seed = policy.from_saved(run.config).seed
    if saved_seed != cfg.seed:
        log.warning("resume: --seed %d ignored; run %s keeps its seed %d", cfg.seed, run.name, saved_seed)
        cfg = dataclasses.replace(cfg, seed=saved_seed)
    folds = pd.read_csv(run.folds_csv, dtype={"person_id": str})
    return run, with_saved_folds(table, folds, run.folds_csv), cfg


def train(cfg: TrainConfig, after_epoch: Callable[[int, int, dict, bool], None] | None = None) -> dict:
    """Train the configured folds into <log_dir>/<name>/; returns the cv.json contents. `after_epoch(fold, epoch,
    metrics, last)` runs after each epoch's last.pt is saved (`last`: the fold ends there), for a sweep's pruner; what
    it raises ends the run there."""
    RunDir(cfg.log_dir, cfg.name)  # a name the file system cannot hold is refused before any work
    dist = dist_mod.setup(cfg.dist_backend)
    progress = Progress()
    try:
        with interruptible(progress.stopped):
            return train_folds(cfg, dist, progress, after_epoch)
    except Interrupted as e:
        log.warning("%s", e, extra=FILE_ONLY)
        raise
    finally:
        tracking.close_all()  # the trackers this run opened, however it ended
        dist_mod.cleanup()


def train_folds(cfg: TrainConfig, dist, progress: Progress, after_epoch=None) -> dict:
    """train()'s work: the data, the run folder, every configured fold, cv.json."""
    setup_logging(None, dist.main)
    check_writable(Path(cfg.log_dir))  # a log_dir that cannot take the run is said before the data is read
    data_report: dict = {}
    table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed, data_report)
    left_out = dropped(table, cfg.drop_ages)
    if left_out.all():
        raise ConfigError(f"--drop_ages {cfg.drop_ages} leaves out every person of the data: nothing would train")
    pseudo = load_pseudo(cfg.pseudo_csv, cfg.pseudo_threshold)
    unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir) if cfg.uda else None
    builders.check_requirements(cfg)  # everything checkable is checked before --overwrite may delete a run
    trackers = tracking.check(cfg)  # and a tracker that cannot be reached or written, before the run folder exists
    run, table, cfg = open_run(cfg, dist, table)
    setup_logging(run.train_log, dist.main)
    seeds.seed_everything(cfg.seed + dist.rank, cfg.deterministic)
    log.info("run %s  commit %s  device %s  world %d%s\n%s", run.root, policy.git_commit()[0], dist.device,
             dist.world, f"  backend {dist.backend}" if dist.backend else "", policy.dump(cfg, TrainConfig))
    log.info("%s", "\n".join(policy.changes(cfg, cfg.recipes)))
    for warning in policy.pointless(cfg):
        log.warning("warning: %s", warning)
    for warning in data_report["warnings"]:  # the console showed them while the data loaded
        log.warning("warning: %s", warning, extra=FILE_ONLY)
    if dist.device.type != "cuda" and cfg.amp != "none":
        log.info("amp=%s applies on CUDA only; this run uses fp32 on %s", cfg.amp, dist.device)
    log.info("data: %d images of %d people; class counts (training labels) %s", len(table),
             table["person_id"].nunique(), np.bincount(table["train_label"], minlength=NUM_CLASSES).tolist())
    if left_out.any():
        log.info("drop_ages %s: %d images of %d people left out of training (they still validate)", cfg.drop_ages,
                 left_out.sum(), table.loc[left_out, "person_id"].nunique())
    images, pseudo_images, unlabeled_images = shared_image_sources(cfg, dist, table, pseudo, unlabeled)
    ins = RunInputs(cfg, dist, run, table, images, pseudo, pseudo_images, unlabeled_images,
                    RunRecords(run, trackers) if dist.main else None, progress, after_epoch)
    for k in range(cfg.n_folds) if cfg.fold == "all" else [int(cfg.fold)]:
        with run.fold_lock(k) if dist.main else contextlib.nullcontext():
            progress.fold, progress.epoch, progress.last = k, 0, run.last(k)
            fit_fold(ins, k)
    photo_people = PhotoPeople(lambda paths: appearance(paths, cfg.max_image_pixels, default_workers(cfg.num_workers)),
                               dict(zip(table["path"], table["person_id"].astype(str))))
    cv = ins.records.write_cv(cfg.n_folds, photo_people) if dist.main else {}
    if cv:
        log.info("CV macro-F1 %.4f over %d out-of-fold images; per fold %s", cv["cv_f1"], cv["oof_rows"],
                 {k: round(v, 4) for k, v in cv["fold_f1"].items()})
        if "cv_f1_tuned" in cv:
            log.info("CV macro-F1 with the tuned decision %.4f (cross-fitted: each fold decided by offsets%s fitted "
                     "on the others; argmax %.4f); in %s", cv["cv_f1_tuned"],
                     " and age cut points" if "cv_age_mae" in cv else "", cv["cv_f1"], ins.run.decision)
        if "cv_age_mae" in cv:
            log.info("age head %s: %.2f years off on average, out of fold", cfg.age_head, cv["cv_age_mae"])
    if ins.records is not None:
        if cv:
            ins.records.hparams(policy.settings(cfg, TrainConfig), cv)
        ins.records.close()
    return cv
