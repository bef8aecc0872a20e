"""The K-fold trainer, the run level: the data, the run folder, each configured fold (src/engine/fold.py), then
cv.json; a signal ends it in one line. Checkpoints are atomic and resumable, metrics are over whole sets, DDP runs
through torchrun."""
from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from src import seeds
from src.config.schema import TrainConfig
from src.data.appearance import appearance
from src.data.loaders import default_workers
from src.data.tables import load_pseudo, load_train, load_unlabeled, with_saved_folds
from src.engine import builders
from src.engine import dist as dist_mod
from src.engine.evaluation import PhotoPeople, evaluate_run
from src.engine.fold import dropped, train_fold
from src.engine.launch import LAUNCHED, RESUME
from src.engine.state import AfterEpoch, Progress, RunInputs, Teaching
from src.errors import ConfigError, GroupLost, Interrupted, MaskclsError, first_line, interruptible
from src.run import tracking
from src.run.atomic import check_writable
from src.run.logging import FILE_ONLY, log, setup_logging
from src.run.opening import open_run
from src.run.oof import read_oof
from src.run.records import RunRecords
from src.run.rundir import RunDir


def train(cfg: TrainConfig, after_epoch: AfterEpoch | None = None, teaching: Teaching | None = None) -> dict:
    """Train the configured folds into <log_dir>/<name>/; returns the cv.json contents. `after_epoch(fold, epoch,
    metrics, last)` runs after each epoch's last.pt is saved (`last`: the fold ends there), for a sweep's pruner; what
    it raises ends the run there. `teaching`: the teachers' probabilities of a distilling student (--teacher)."""
    RunDir(cfg.log_dir, cfg.name)  # a name the file system cannot hold is refused before any work
    if cfg.teacher and teaching is None:
        raise ConfigError("--teacher runs through train.py, which makes the soft targets (src/predict/distill.py)")
    dist = dist_mod.setup(cfg.dist_backend)
    cfg = continued(cfg, dist)
    progress = Progress()
    try:
        with interruptible(progress.stopped):
            return train_folds(cfg, dist, progress, after_epoch, teaching)
    except Interrupted as e:
        log.warning("%s", e, extra=FILE_ONLY)
        if dist.enabled and os.environ.get(LAUNCHED):  # the launcher says how the run ended, in one line
            raise SystemExit(e.exit_code) from None
        raise
    except MaskclsError as e:  # the console gets it from the entry point; train.log keeps it too
        log.error("%s", "\n".join(e.lines()), extra=FILE_ONLY)
        raise
    except RuntimeError as e:
        if not (dist.enabled and dist_mod.lost_member(e)):
            raise
        left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) - int(os.environ.get("TORCHELASTIC_RESTART_COUNT",
                                                                                           "0"))
        then = "torchrun restarts the group, which resumes from each fold's last.pt" if left > 0 else RESUME
        lost = GroupLost(f"rank {dist.rank} of {dist.world} stopped: another rank of the group went away "
                         f"({first_line(e)[:160]}); {then}")
        log.error("%s", lost, extra=FILE_ONLY)
        if os.environ.get(LAUNCHED):  # the launcher says it, with the rank that went where it knows it
            raise SystemExit(lost.exit_code) from None
        raise lost from None
    finally:
        dist_mod.cleanup()


def continued(cfg: TrainConfig, dist) -> TrainConfig:
    """The settings of this launch: after torchrun restarted the group (a worker died), a resume of the run."""
    return dataclasses.replace(cfg, resume=True, overwrite=False) if dist.restarts and not cfg.resume else cfg


def train_folds(cfg: TrainConfig, dist, progress: Progress, after_epoch=None, teaching: Teaching | None = None) -> dict:
    """train()'s work: the data, the run folder, every configured fold, cv.json."""
    setup_logging(None, dist.main)
    if dist.restarts and dist.main:
        log.info("torchrun restart %d: the run continues from each fold's last.pt", dist.restarts)
    if cfg.sync_bn and not dist.enabled:
        log.warning("warning: --sync_bn true has no effect in one process (it applies under torchrun)")
    if dist.main:
        check_writable(Path(cfg.log_dir))  # a log_dir that cannot take the run is said before the data is read
    data_report: dict = {}
    table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed, data_report)
    left_out = dropped(table, cfg.drop_ages)
    if left_out.all():
        raise ConfigError(f"--drop_ages {cfg.drop_ages} leaves out every person of the data: nothing would train")
    pseudo = load_pseudo(cfg.pseudo_csv, cfg.pseudo_threshold)
    unlabeled = load_unlabeled(cfg.data_dir, cfg.unlabeled_dir) if cfg.uda else None
    if teaching is not None and len(teaching.unlabeled):
        unlabeled = teaching.unlabeled
    builders.check_requirements(cfg)  # everything checkable is checked before --overwrite may delete a run
    # and a tracker that cannot be reached or written, before the run folder exists: by the one process that sends
    trackers = tracking.check(cfg) if dist.main else []
    people_folds = table.groupby("person_id", sort=False)["fold"].first().reset_index()
    run, saved_folds, cfg = open_run(cfg, dist.main, people_folds, lambda: dist_mod.barrier(dist))
    table = with_saved_folds(table, saved_folds, run.folds_csv)
    setup_logging(run.train_log, dist.main)
    seeds.seed_everything(cfg.seed + dist.rank, cfg.deterministic)
    with RunRecords(run, trackers) if dist.main else contextlib.nullcontext() as records:  # closed however it ends
        if records is not None:
            records.started(cfg, dist, table, left_out, data_report["warnings"])
        images, pseudo_images, unlabeled_images = shared_image_sources(cfg, dist, table, pseudo, unlabeled)
        ins = RunInputs(cfg, dist, run, table, images, pseudo, pseudo_images, unlabeled_images, records, progress,
                        after_epoch, teaching)
        for k in trained_folds(cfg):
            with run.fold_lock(k) if dist.main else contextlib.nullcontext():
                progress.fold, progress.epoch, progress.last = k, 0, run.last(k)
                train_fold(ins, k)
        if records is None:
            return {}
        if cfg.fold == "full":
            log.info("fold full: one model trained on all %d people and validated on none, so this run has no CV; "
                     "its honest CV is that of the K-fold run of the same recipe%s", table["person_id"].nunique(),
                     f" (the teachers {', '.join(cfg.teacher)})" if cfg.teacher else "")
        photo_people = PhotoPeople(lambda paths: appearance(paths, cfg.max_image_pixels,
                                                            default_workers(cfg.num_workers)),
                                   dict(zip(table["path"], table["person_id"].astype(str))))
        with run.lock():  # folds trained side by side: one process at a time rebuilds the run's results
            return records.write_results(cfg, evaluate_run(read_oof(run, range(cfg.n_folds)), cfg.n_folds,
                                                           photo_people))


def trained_folds(cfg: TrainConfig) -> list[int]:
    """The folds this command trains: every one, one, or fold 0 for --fold full (its one model)."""
    if cfg.fold == "all":
        return list(range(cfg.n_folds))
    return [0] if cfg.fold == "full" else [int(cfg.fold)]


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
