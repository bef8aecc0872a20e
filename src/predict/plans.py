"""Which runs predict: each run's settings, the chosen checkpoint of every finished fold, and the folds a live
trainer still holds. Every caller (infer, pseudo labels, predict, export) checks its runs here before any model
loads."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from src.config import policy
from src.config.schema import LogDir, Prediction, TrainConfig
from src.errors import ConfigError, RunNotFound
from src.run.checkpoint import is_finished
from src.run.rundir import RunDir, holder


@dataclass
class RunPlan:
    """One run of a prediction: its settings, the checkpoint kind (auto resolved), that checkpoint of each finished
    fold, and the folds that a live trainer still holds (fold -> who)."""
    name: str
    run: RunDir
    cfg: TrainConfig
    checkpoint: str
    checkpoints: list[Path]
    folds: list[int]
    training: dict[int, str]

    def used(self) -> str:
        """Which folds predict, with which checkpoint, and which a trainer still holds (left out)."""
        busy = "".join(f"; fold {k} is still being trained by {who} and is left out" for k, who in self.training.items())
        return f"fold(s) {', '.join(map(str, self.folds))} used ({self.checkpoint}){busy}"


def plan_run(log_dir, name: str, checkpoint: str) -> RunPlan:
    """The checkpoints of every finished fold of one run; a clear error for a missing run, fold or file.
    `checkpoint` auto is the run's oof_from: the weights whose validation rows are its oof.csv; a --fold full run's
    last.pt (it validated nothing, so it keeps no best_* file)."""
    run = RunDir(log_dir, name)
    if not run.exists:
        raise RunNotFound(f"run {run.root}: not found (no {run.config}); train it first")
    run_cfg = policy.from_saved(run.config)
    if checkpoint == "auto":
        checkpoint = "last" if run_cfg.fold == "full" else run_cfg.oof_from
    training = {k: holder(run.fold_lock_file(k)) for k in run.training_folds(run_cfg.n_folds)}
    finished = [k for k in run.folds() if is_finished(run.last(k))]
    if not finished:
        if training:
            raise RunNotFound(f"run {run.root}: no finished fold yet; "
                              + ", ".join(f"fold {k} is being trained by {who}" for k, who in training.items())
                              + "; wait for it to finish")
        raise RunNotFound(f"run {run.root}: no finished fold (each fold's last.pt marks it); "
                          f"finish training with --resume")
    paths = [run.checkpoint(k, checkpoint) for k in finished]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RunNotFound(f"run {run.root}: checkpoint file(s) missing: {', '.join(missing)}")
    return RunPlan(name, run, run_cfg, checkpoint, paths, finished, training)


def chosen_runs(cfg: Prediction) -> list[str]:
    runs = cfg.runs or ([cfg.run] if cfg.run else [])
    if not runs:
        raise ConfigError("name the run(s) to predict with: --run NAME or --runs NAME1 NAME2 ...")
    return runs


def plan_runs(cfg: Prediction | LogDir) -> list[RunPlan]:
    """The plans of --run/--runs; each is logged (RunPlan.used) once its models load."""
    return [plan_run(cfg.log_dir, name, cfg.checkpoint) for name in chosen_runs(cfg)]


@contextlib.contextmanager
def reading_runs(cfg: Prediction | LogDir):
    """plan_runs(cfg) for the block, every run held against --overwrite (RunDir.reading) until it ends: what a
    prediction reads and writes belongs to the runs it planned."""
    with contextlib.ExitStack() as stack:
        for name in chosen_runs(cfg):
            stack.enter_context(RunDir(cfg.log_dir, name).reading())
        yield plan_runs(cfg)


def check_runs(cfg: Prediction | LogDir):
    """Every run of --run/--runs exists with the chosen checkpoint of each finished fold; nothing loads."""
    for name in chosen_runs(cfg):
        plan_run(cfg.log_dir, name, cfg.checkpoint)
