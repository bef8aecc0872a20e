"""One pseudo-labelling round: the teacher runs label unlabelled images, then a new run trains on them."""
from __future__ import annotations

import logging
from pathlib import Path

from src.config import ConfigError
from src.predict import check_runs, make_pseudo_labels
from src.records import setup_logging
from src.rundir import RunDir
from src.trainer import train

log = logging.getLogger("maskcls")


def pseudo_train(cfg) -> dict:
    """With --run/--runs: check the teachers, claim the run, make fresh labels into it, train.
    Fresh labels replace a pseudo_csv inherited from a recipe or a previous round's config.yaml.
    Without a teacher: train on --pseudo_csv as given."""
    setup_logging()
    if cfg.run or cfg.runs:
        check_runs(cfg)
        run = RunDir(cfg.log_dir, cfg.name)
        run.claim(cfg.resume, cfg.overwrite)
        fresh = make_pseudo_labels(cfg, run)
        if cfg.pseudo_csv and Path(cfg.pseudo_csv).resolve() != fresh.resolve():
            log.info("pseudo_csv %s replaced by the fresh labels %s", cfg.pseudo_csv, fresh)
        cfg.pseudo_csv = str(fresh)
    elif not cfg.pseudo_csv:
        raise ConfigError("pseudo_train.py needs a teacher (--run NAME or --runs A B) or --pseudo_csv FILE")
    return train(cfg)
