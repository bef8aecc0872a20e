"""Opening a run folder to train in it: a new run, a resume, or a second process joining a run that another has just
created (folds side by side). The rules of the name itself (taken, --resume, --overwrite, locks) are RunDir.claim's."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pandas as pd

from src.config import policy
from src.config.schema import TrainConfig
from src.errors import ConfigError
from src.run.atomic import save_csv, save_text
from src.run.logging import log
from src.run.rundir import RunDir


def saved_any_epoch(run: RunDir, n_folds: int) -> bool:
    """Whether a fold of the run has a last.pt, or a trainer at work that may write one."""
    return any(run.last(k).is_file() for k in run.folds()) or bool(run.training_folds(n_folds))


def open_run(cfg: TrainConfig, main: bool, people_folds: pd.DataFrame,
             barrier: Callable[[], None]) -> tuple[RunDir, pd.DataFrame, TrainConfig]:
    """Claim the run name (on the `main` process; the others wait at `barrier`). A new run saves its fold assignment
    (`people_folds`: person_id, fold) and settings; a resumed run, or a process joining a run that another has just
    created, must have the same settings (policy.MAY_CHANGE_ON_RESUME aside) and takes the saved folds and seed, said
    in one line where --seed differs. Returns the run, its saved folds and the settings resolved (a copy with the
    run's seed). Each process reads config.yaml once."""
    run = RunDir(cfg.log_dir, cfg.name)
    people = set(people_folds["person_id"].astype(str))
    saved: TrainConfig | None = None

    def prepare(_how: str):
        nonlocal saved
        if run.exists:
            try:
                saved, unreadable = policy.from_saved(run.config), None
            except ConfigError as e:
                unreadable = e
            if not saved_any_epoch(run, cfg.n_folds) and not same_start(run, saved, cfg, people):
                # a run that failed before its first epoch holds nothing to continue: --resume starts it afresh. One
                # whose settings and people are these is kept: another process may have just made it and be about to
                # train
                log.info("run %s: no epoch was saved yet, so it starts again with these settings", run.name)
                for path in (run.config, run.folds_csv):
                    path.unlink(missing_ok=True)
            elif unreadable is not None:
                raise unreadable
            else:
                conflicts = policy.resume_conflicts(saved, cfg)
                if conflicts:
                    raise ConfigError(
                        f"{run.config}: this run was made with other settings, which --resume may not change: "
                        + ", ".join(f"{k} (saved {a!r}, now {b!r})" for k, (a, b) in conflicts.items())
                        + "; use the saved values, or train a new run with another --name")
        if not run.folds_csv.is_file():
            save_csv(people_folds, run.folds_csv)
        if not run.exists:
            save_text(policy.dump(cfg, TrainConfig), run.config)
            saved = cfg

    if main:
        run.claim(cfg.resume, cfg.overwrite, prepare)
    barrier()
    saved = saved or policy.from_saved(run.config)  # the other processes read what the main one settled
    if saved.seed != cfg.seed:
        log.warning("resume: --seed %d ignored; run %s keeps its seed %d", cfg.seed, run.name, saved.seed)
        cfg = dataclasses.replace(cfg, seed=saved.seed)
    return run, pd.read_csv(run.folds_csv, dtype={"person_id": str}), cfg


def same_start(run: RunDir, saved: TrainConfig | None, cfg: TrainConfig, people: set[str]) -> bool:
    """Whether a run folder holds these settings (`saved`: None where they cannot be read; what a resume may not
    change) and these people's folds."""
    if saved is None or policy.resume_conflicts(saved, cfg):
        return False
    try:
        folds = set(pd.read_csv(run.folds_csv, dtype={"person_id": str})["person_id"])
    except (OSError, ValueError, KeyError):
        return False
    return folds == people
