"""One fold of a run: its datasets, loaders, training objects and saver (build_fold, from the settings), and its loop
(train_fold): restore from last.pt, then train, validate where due and finish each epoch (src/engine/epoch.py) until
the last or an early stop."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, Subset

from src import seeds
from src.config.schema import AgeSpan, TrainConfig
from src.data.dataset import FaceDataset, Take
from src.data.samplers import train_sampler
from src.engine import builders
from src.engine import dist as dist_mod
from src.engine.epoch import finish_epoch, train_one_epoch, validate, validation_due
from src.engine.optim import build_optimizer, build_scheduler
from src.engine.state import EpochPlan, Fold, FoldData, RunInputs
from src.engine.stopping import EarlyStopping
from src.labels import BAND_CUTS
from src.model.age import tells_years
from src.model.sync_bn import sync_batchnorm
from src.run.logging import log
from src.run.saver import FoldObjects, FoldSaver, saved_state


def train_fold(ins: RunInputs, k: int):
    """Build, restore, loop (train, validate, finish the epoch), stop."""
    cfg, dist, run = ins.cfg, ins.dist, ins.run
    state = saved_state(run, k)
    if state is not None and state.finished:
        log.info("fold %d: finished earlier, skipped", k)
        return
    if dist.main:
        run.fold(k).mkdir(parents=True, exist_ok=True)
    # each fold starts from its own seed: the same weights whether it trains alone, after other folds, or again
    seed = seeds.fold_seed(cfg.seed, k, dist.rank)
    seeds.seed_everything(seed, cfg.deterministic)
    fold = build_fold(ins, k, seed)
    start_epoch = fold.saver.resume(state, steps_per_epoch=len(fold.data.train_loader), rank=dist.rank,
                                    world=dist.world, network=f"model {cfg.model}, heads {cfg.heads}")
    if state is not None and start_epoch >= cfg.epochs:  # resumed with fewer epochs than it already ran
        # the saved epoch becomes the fold's last; it is validated now (val_every may have skipped it), so the fold
        # ends with its oof.csv and best_* files as if it had stopped there
        validates = len(fold.data.val_rows) > 0  # --fold full validates nothing
        fold.saver.finish_saved(state, validate(ins, fold, state.epoch) if validates else None)
        log.info("fold %d: already ran %d epochs (%d asked); %s epoch %d and marked finished", k, start_epoch,
                 cfg.epochs, "validated" if validates else "kept", state.epoch)
        dist_mod.barrier(dist)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            ins.progress.epoch = epoch
            fold.saver.check()  # the previous epoch's files could not be written: stop before training another
            started = time.perf_counter()
            stats = train_one_epoch(ins, fold, epoch)
            validated = validate(ins, fold, epoch) if validation_due(fold, epoch) else None
            if finish_epoch(ins, fold, epoch, stats | dict(time_s=time.perf_counter() - started), validated):
                break
    finally:
        fold.saver.wait()  # however the loop ended, its last writes are done before the fold's lock is released
    fold.saver.end()


def build_fold(ins: RunInputs, k: int, seed: int) -> Fold:
    """Fold k's datasets, loaders, training objects and saver, drawn in one fixed order from the fold's seed."""
    cfg, dist, device = ins.cfg, ins.dist, ins.dist.device
    train_ds, train_labels, val_ds, val_rows = fold_datasets(cfg, ins.table, ins.images, k, seed, ins.pseudo,
                                                             ins.pseudo_images)
    sampler = train_sampler(cfg.sampler, train_labels, dist.world, dist.rank, cfg.seed)
    train_loader = builders.loader(train_ds, cfg, device, cfg.batch_size, sampler,
                                   drop_last=len(train_ds) > cfg.batch_size, seed=seed)
    val_loader = builders.loader(Subset(val_ds, range(dist.rank, len(val_ds), dist.world)), cfg, device,
                                 cfg.infer_batch_size, seed=seed)
    unlabeled = unlabeled_loader(ins, seed) if ins.unlabeled_images is not None else None
    model = builders.model(cfg).to(device)
    if cfg.sync_bn and dist.enabled:
        model = sync_batchnorm(model, device)
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
    objects = FoldObjects(model=model, optimizer=optimizer, scheduler=scheduler, step=step, stopper=stopper, ema=ema,
                          kept=kept)
    return Fold(k, seed, EpochPlan(cfg.epochs, cfg.val_every, cfg.early_stop_monitor, cfg.amp),
                FoldData(train_ds, sampler, train_loader, val_loader, torch.as_tensor(val_ds.labels), val_rows,
                         unlabeled, fold_soft_targets(ins, k)),
                criterion, sched_when, eval_model, objects,
                FoldSaver(ins.run, k, objects, oof_from=cfg.oof_from, records=ins.records, writes=dist.main))


def dropped(table: pd.DataFrame, drop_ages: str) -> np.ndarray:
    """Rows of people whose age drop_ages names: they never train, but validate in their fold."""
    span = AgeSpan.bounds(drop_ages)
    return table["age"].between(*span).to_numpy() if span else np.zeros(len(table), dtype=bool)


def train_rows(cfg: TrainConfig, table: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of `table` in fold k; --fold full trains every row and validates none."""
    folds, kept = table["fold"].to_numpy(), ~dropped(table, cfg.drop_ages)
    if cfg.fold == "full":
        return np.flatnonzero(kept), np.flatnonzero(np.zeros(len(table), dtype=bool))
    return np.flatnonzero((folds != k) & kept), np.flatnonzero(folds == k)


def fold_datasets(cfg: TrainConfig, table: pd.DataFrame, images, k: int, seed: int | None = None, pseudo=None,
                  pseudo_images=None):
    """(train dataset, its labels, validation dataset, validation rows of `table`) of fold k, its augmentation drawn
    from the fold's `seed` (a run's build_fold passes the one it computed; default: rank 0's). Pseudo-labelled rows
    only ever join the training side."""
    seed = seeds.fold_seed(cfg.seed, k, 0) if seed is None else seed
    tr, va = train_rows(cfg, table, k)
    train_labels = table["train_label"].to_numpy()[tr]
    # a number age head learns the exact age; the age filter's "60+" (age >= age_filter) is 60 there too
    ages = np.where(table["age"] >= cfg.age_filter, BAND_CUTS[1], table["age"]).astype(int)[tr] \
        if tells_years(cfg.age_head) else None
    train_ds = FaceDataset(Take(images, tr), train_labels, builders.train_transform(cfg), seed=seed, ages=ages)
    if pseudo is not None and len(pseudo):
        pseudo_ds = FaceDataset(pseudo_images, pseudo["label"].to_numpy(), builders.train_transform(cfg),
                                seed=seeds.pseudo_seed(seed))
        train_labels = np.concatenate([train_labels, pseudo["label"].to_numpy()])
        train_ds = ConcatDataset([train_ds, pseudo_ds])
    val_ds = FaceDataset(Take(images, va), table["label"].to_numpy()[va], builders.eval_transform(cfg))
    return train_ds, train_labels, val_ds, va


def fold_soft_targets(ins: RunInputs, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The teachers' probabilities of fold k's training photos (in the training dataset's order) and of the
    unlabelled photos; None without --teacher."""
    if ins.teaching is None:
        return None
    tr, _ = train_rows(ins.cfg, ins.table, k)
    return ins.teaching.train_probs(ins.table["path"].to_numpy()[tr]), ins.teaching.unlabeled_probs()


def unlabeled_loader(ins: RunInputs, seed: int) -> tuple:
    """(loader, sampler) of the unlabelled images (UDA's weak and strong views, or a distilling student's photos as
    the training ones are augmented): its own seed, the same on every fold."""
    cfg, dist = ins.cfg, ins.dist
    unl_seed = seeds.unlabeled_seed(cfg.seed)
    transform = builders.uda_transform(cfg) if cfg.uda else builders.train_transform(cfg)
    unl_ds = FaceDataset(ins.unlabeled_images, None, transform, seed=seeds.unlabeled_seed(cfg.seed, dist.rank))
    unl_sampler = train_sampler("none", np.zeros(len(unl_ds), int), dist.world, dist.rank, unl_seed)
    unl_bs = max(1, round(cfg.batch_size * cfg.uda_ratio)) if cfg.uda else unlabeled_batch(cfg.batch_size,
                                                                                        cfg.distill_unlabeled_share)
    return builders.loader(unl_ds, cfg, dist.device, unl_bs, unl_sampler, drop_last=len(unl_ds) > unl_bs,
                           seed=seed), unl_sampler


def unlabeled_batch(batch_size: int, share: float) -> int:
    """Unlabelled photos beside batch_size labelled ones, so that they are `share` of the batch."""
    return max(1, round(batch_size * share / (1 - share)))
