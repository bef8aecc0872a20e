"""One pseudo-labelling round: the teacher runs label unlabelled images, then a new run trains on them."""
from __future__ import annotations

import dataclasses
import logging

from src.config.schema import PseudoConfig
from src.data.tables import load_train, load_unlabeled
from src.engine import builders
from src.engine import dist as dist_mod
from src.engine.trainer import train
from src.errors import ConfigError
from src.predict.infer import make_pseudo_labels
from src.predict.plans import check_runs, chosen_runs
from src.run import tracking
from src.run.logging import setup_logging
from src.run.rundir import RunDir
from src.files import real

log = logging.getLogger("maskcls")


def pseudo_train(cfg: PseudoConfig) -> dict:
    """With --run/--runs: check everything (teachers, data, weights) before the run name is claimed, label
    on rank 0, then train. Fresh labels replace a pseudo_csv inherited from a recipe or a previous round's
    config.yaml. Without a teacher: train on --pseudo_csv as given."""
    setup_logging()
    if cfg.run or cfg.runs:
        if cfg.name in chosen_runs(cfg):
            raise ConfigError(f"--name {cfg.name} is also a teacher run; the student needs a new name")
        check_runs(cfg)
        load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
        load_unlabeled(cfg.data_dir, cfg.unlabeled_dir)
        builders.check_requirements(cfg)
        tracking.check(cfg)  # a tracker that cannot be reached or written, before the run name is claimed
        dist = dist_mod.setup(cfg.dist_backend)
        run = RunDir(cfg.log_dir, cfg.name)
        if dist.main:
            run.claim(cfg.resume, cfg.overwrite)
            make_pseudo_labels(cfg, run)
        dist_mod.barrier(dist)
        if cfg.pseudo_csv and real(cfg.pseudo_csv) != real(run.pseudo_labels):
            log.info("pseudo_csv %s replaced by the fresh labels %s", cfg.pseudo_csv, run.pseudo_labels)
        cfg = dataclasses.replace(cfg, pseudo_csv=str(run.pseudo_labels))  # a resolved copy: the parsed one stays
    elif not cfg.pseudo_csv:
        raise ConfigError("pseudo_train.py needs a teacher (--run NAME or --runs A B) or --pseudo_csv FILE")
    return train(cfg)
