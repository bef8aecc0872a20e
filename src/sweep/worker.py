"""sweep.py's work: one worker of a study. Each trial is an ordinary run trained by the real trainer, pruned on the
first trained fold's per-epoch validation F1; workers stop once the study's n_trials have run, counted over all of
them, and wait for trials still running elsewhere so that one whose worker died is retried."""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import shlex
import socket
import time

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from src.config import policy
from src.config.parsing import fields_of, parse
from src.config.schema import SweepConfig, TrainConfig
from src.errors import ConfigError, Interrupted, InvalidTrial, MaskclsError, ModelError, NonFinite
from src.engine import trainer
from src.run import tracking
from src.run.atomic import save_text
from src.run.logging import setup_logging
from src.run.rundir import RunDir, list_runs
from src.sweep import cost
from src.sweep import study as studies
from src.sweep.space import SweepSpec, load_spec, option_args

log = logging.getLogger("maskcls")
# what a trial's own settings cause (a NaN loss, a size or weights the model cannot take, a refused combination)
# fails that trial and the sweep goes on; anything else (the data, the disk, a missing package, Ctrl-C) would fail
# every trial alike, so it stops the worker
TRIAL_ERRORS = (NonFinite, ModelError, InvalidTrial)
# train.py keys that differ between machines of one study; every other setting must match for a worker to join
MACHINE_KEYS = ("data_dir", "log_dir", "num_workers", "prefetch_factor", "infer_batch_size", "recipes")
STEP_TIMES = "step_times"  # study user attr: a machine's measured cost.StepTimes for one step_key


class QuietInterruption(logging.Filter):
    """Optuna logs a trial's exception with its traceback before raising it again; an interruption prints its own
    one line (and the worker says that the trial is queued again), so Optuna's record of it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Interrupted))


logging.getLogger("optuna.study._optimize").addFilter(QuietInterruption())


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(sweep.py's own options, the train.py keys fixed for every trial), each option with the values after it."""
    own, train = [], []
    target = own
    for tok in argv:
        if tok.startswith("--"):
            key = tok[2:].partition("=")[0]
            if key in fields_of(SweepConfig) or key == "help":
                target = own
            elif key in fields_of(TrainConfig) or key == "config":
                target = train
            else:
                raise unknown_option(key)
        target.append(tok)
    return own, train


def unknown_option(key: str) -> ConfigError:
    options = [k for k in (*fields_of(SweepConfig), *fields_of(TrainConfig)) if k not in ("recipes",)]
    close = difflib.get_close_matches(key, options, n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown option --{key}.{hint} sweep.py takes {', '.join(fields_of(SweepConfig))} and any "
                       f"train.py key (fixed for every trial)")


def main(argv: list[str]) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("sweep.py runs one process per trial: start one worker per GPU with CUDA_VISIBLE_DEVICES=k "
                          "instead of torchrun")
    own, train_args = split_args(argv)
    cfg = parse(own, SweepConfig)
    if not cfg.study:
        raise ConfigError("--study names the study (its trials' runs are <study>-<trial number>)")
    fixed = parse(train_args, TrainConfig)  # log_dir, and every fixed key checked before anything starts
    if cfg.show:
        storage = studies.open_storage(cfg.storage, fixed.log_dir, cfg.heartbeat_grace, create=False)
        print(studies.show_text(studies.load_study(storage, cfg.study)))
        return 0
    if not cfg.sweep:
        raise ConfigError("--sweep names the sweep file (experiments/sweeps/*.yaml); --show prints a study instead")
    spec = load_spec(cfg.sweep, train_args, cfg.trial_minutes)
    storage = studies.open_storage(cfg.storage, fixed.log_dir, cfg.heartbeat_grace)
    Worker(cfg, spec, train_args, storage).run()
    return 0


class Worker:
    def __init__(self, cfg: SweepConfig, spec: SweepSpec, train_args: list[str], storage):
        self.cfg, self.spec, self.train_args, self.storage = cfg, spec, train_args, storage
        self.current: int | None = None  # the trial this worker is training
        self.log_dir = parse(train_args).log_dir
        self.study = optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize",
                                         sampler=spec.make_sampler(), pruner=spec.make_pruner(), load_if_exists=True)
        self.check_same_sweep()
        self.n_trials = self.budget()
        self.check_foreign_runs()

    def record(self) -> dict:
        """The search this worker runs: the sweep file's space, objective, sampler and pruner, and every setting of
        the base recipe with the fixed keys (machine-specific ones aside), so an edited base recipe counts too."""
        settings = policy.settings(parse(["--config", str(self.spec.base), *self.train_args]), TrainConfig)
        fixed = {k: v for k, v in settings.items() if k not in MACHINE_KEYS}
        return json.loads(json.dumps(self.spec.record() | dict(settings=fixed)))

    def check_same_sweep(self):
        """A study runs one search: a worker that brings another space, sampler, pruner or settings is refused."""
        saved = self.study.user_attrs.get("sweep")
        mine = self.record()
        if saved is None:
            self.study.set_user_attr("sweep", mine)
            return
        differ = [k for k in mine if saved.get(k) != mine[k]]
        if differ == ["settings"]:
            differ = [f"--{k}" for k in mine["settings"] if saved["settings"].get(k) != mine["settings"][k]] or differ
        if differ:
            raise ConfigError(f"study {self.cfg.study} was started with another {', '.join(differ[:3])}; join it with "
                              f"the same sweep file, base recipe and fixed keys, or use another --study")

    def budget(self) -> int:
        """n_trials of the study: the first worker's, unless --n_trials sets it anew (to extend a study)."""
        saved = self.study.user_attrs.get("n_trials")
        if self.cfg.n_trials or saved is None:
            wanted = self.cfg.n_trials or self.spec.n_trials
            if saved is not None and saved != wanted:
                log.info("sweep %s: n_trials %d -> %d (--n_trials)", self.cfg.study, saved, wanted)
            self.study.set_user_attr("n_trials", wanted)
            return wanted
        return saved

    def check_foreign_runs(self):
        """Run folders named like this study's trials that none of its trials trained (a study deleted and started
        again) would be resumed as if they were its own: refused."""
        prefix = f"{self.cfg.study}-"
        candidates = [r.name for r in list_runs(self.log_dir) if r.name.startswith(prefix)
                      and r.name[len(prefix):].isdigit()]  # listed before the trials: a trial started meanwhile is known
        known = {t.user_attrs.get("run") for t in self.study.get_trials(deepcopy=False)}
        foreign = [name for name in candidates if name not in known]
        if foreign:
            raise ConfigError(f"run folder(s) {', '.join(sorted(foreign)[:3])} in {self.log_dir} belong to no trial of "
                              f"study {self.cfg.study}; move them away or use another --study")

    def run(self):
        start = time.monotonic()
        timeout = self.spec.timeout
        while True:
            optuna.storages.fail_stale_trials(self.study)  # a dead worker's trial becomes a waiting retry
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            spent = len(studies.counted(trials)) >= self.n_trials
            if spent and not waiting:
                running = [t.number for t in trials if t.state == TrialState.RUNNING]
                if not running:
                    break
                log.info("sweep %s: budget spent; waiting for trial(s) %s of other workers (a dead one is retried "
                         "after %d s)", self.cfg.study, running, self.cfg.heartbeat_grace)
                time.sleep(max(1, self.cfg.heartbeat_grace // 3))
                continue
            over = studies.over_budget(trials)
            if over >= studies.OVER_BUDGET_LIMIT * self.n_trials:
                log.warning("sweep %s: %d trials drawn were over trial_minutes %g and never trained: the space is "
                            "mostly over the budget; narrow it or raise trial_minutes", self.cfg.study, over,
                            self.spec.trial_minutes)
                break
            if timeout is not None and time.monotonic() - start > timeout:
                log.info("sweep %s: this worker's timeout of %g s is spent", self.cfg.study, timeout)
                break
            try:
                self.study.optimize(self.objective, n_trials=1, catch=TRIAL_ERRORS, gc_after_trial=True)
            except Interrupted:
                self.queue_again()
                raise
        trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        best = f"{self.study.best_value:.4f} (trial {self.study.best_trial.number})" if finished else "none"
        log.info("sweep %s: %d trials counted, %d finished; best %s", self.cfg.study, len(studies.counted(trials)),
                 len(finished), best)

    def queue_again(self):
        """The trial a signal stopped is queued again like a dead worker's, so that the next worker resumes it."""
        mine = [t for t in self.study.get_trials(deepcopy=False) if t.number == self.current]
        if mine and mine[0].state == TrialState.FAIL:
            self.storage.get_heartbeat_stale_trial_callback()(self.study, mine[0])
            log.info("sweep %s: trial %d was interrupted; it is queued again and resumes its run when a worker "
                     "starts", self.cfg.study, self.current)

    def objective(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        frozen = self.not_surplus(trial)
        name = studies.run_name(self.cfg.study, frozen)
        # workers share the study's seed: each trial draws from its own seed, so workers started together still
        # sample different parameters, and one worker's sweep is reproducible
        self.study.sampler = self.spec.make_sampler(trial.number)
        params = {p.key: p.suggest(trial) for p in self.spec.space}
        args = ["--config", str(self.spec.base), *self.train_args, *option_args(params), "--fold", self.spec.folds,
                "--name", name]
        trial.set_user_attr("run", name)
        trial.set_user_attr("command", "python train.py " + shlex.join(args))
        try:
            cfg = parse(args)
        except ConfigError as e:  # each searched value was checked alone; this combination is refused
            raise InvalidTrial(f"trial {trial.number}: {e}", e.key) from None
        if self.spec.trial_minutes:
            self.within_budget(trial, cfg)
        run = RunDir(cfg.log_dir, name)
        # a retry carries on from its original's last.pt; with --tracker, the study's trials are runs of one experiment
        cfg = dataclasses.replace(cfg, resume=run.exists, experiment=cfg.experiment or self.cfg.study)
        record = dict(study=self.cfg.study, storage=studies.shown_url(studies.storage_url(self.cfg.storage,
                                                                                              self.log_dir)),
                      trial=int(name.rsplit("-", 1)[1]), attempt=trial.number, params=params)
        prune_fold = frozen.user_attrs.get("prune_fold")  # a retry prunes on its original's fold

        def after_epoch(k: int, epoch: int, metrics: dict, last: bool):
            nonlocal prune_fold
            if prune_fold is None:
                prune_fold = k
                trial.set_user_attr("prune_fold", k)
            mark(run, record, "running", fold=k, epoch=epoch)
            if k != prune_fold or not metrics:  # other folds, and epochs not validated (val_every), report nothing
                return
            trial.report(metrics["val_f1"], epoch)
            if not last and trial.should_prune():  # after a fold's last epoch there is nothing left to save
                mark(run, record, "pruned", epoch=epoch, val_f1=metrics["val_f1"])
                log.info("trial %d (%s): pruned after fold %d epoch %d, val_f1 %.4f", trial.number, name, k, epoch,
                         metrics["val_f1"])
                raise optuna.TrialPruned(f"fold {k} epoch {epoch}: val_f1 {metrics['val_f1']:.4f}")

        started = time.monotonic()
        try:
            cv = trainer.train(cfg, after_epoch)
        except MaskclsError as e:
            if run.root.is_dir():
                mark(run, record, "interrupted" if isinstance(e, Interrupted) else "failed",
                     error=str(e).splitlines()[0])
            raise
        finally:
            setup_logging(None)  # the next trial's messages must not go to this run's train.log
        value = cv.get("cv_f1_tuned", cv["cv_f1"])
        trial.set_user_attr(studies.TRAINED, (time.monotonic() - started) / 60)
        trial.set_user_attr("objective", "cv_f1_tuned" if "cv_f1_tuned" in cv else "cv_f1")
        mark(run, record, "complete", value=value)
        return value

    def not_surplus(self, trial: optuna.Trial) -> FrozenTrial:
        """The trial as stored; pruned at once where other workers took the study's last slots meanwhile."""
        trials = self.study.get_trials(deepcopy=False)
        frozen = next(t for t in trials if t.number == trial.number)
        if not studies.is_retry(frozen) and len(studies.counted([t for t in trials if t.number < trial.number])) \
                >= self.n_trials:
            trial.set_user_attr(studies.SURPLUS, True)
            raise optuna.TrialPruned("surplus: the study's n_trials were already taken")
        return frozen

    def within_budget(self, trial: optuna.Trial, cfg: TrainConfig):
        """Prune the trial before it trains when its predicted training time exceeds trial_minutes. The step times
        are measured once per machine and step settings, and kept in the study for every worker of that machine."""
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        key = f"{STEP_TIMES} {cost.step_key(cfg, device)}"
        saved = self.study.user_attrs.get(key)
        if saved is None:
            times = cost.measure_steps(cfg, device)
            self.study.set_user_attr(key, dataclasses.asdict(times))
        else:
            times = cost.StepTimes(**saved)
        steps = cost.predicted_seconds(cfg, cost.fold_photos(cfg), times) / 60
        host = socket.gethostname()
        factor = cost.calibration([(t.user_attrs[studies.STEPS_PREDICTED], t.user_attrs[studies.TRAINED])
                                   for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                                   if t.user_attrs.get(studies.HOST) == host and studies.TRAINED in t.user_attrs
                                   and not studies.is_retry(t)])  # a retry trained only the rest of its run
        minutes = steps * factor
        for key, value in ((studies.HOST, host), (studies.STEPS_PREDICTED, steps), (studies.PREDICTED, minutes)):
            trial.set_user_attr(key, value)
        # TPE ranks infeasible draws by how far over they are: those over the budget still steer it toward the rest
        trial.set_constraint(studies.MINUTES_OVER, minutes - self.spec.trial_minutes)
        if minutes > self.spec.trial_minutes:
            trial.set_user_attr(studies.OVER_BUDGET, True)
            log.info("trial %d: pruned before training: predicted %.1f min > trial_minutes %g", trial.number, minutes,
                     self.spec.trial_minutes)
            raise optuna.TrialPruned(f"predicted {minutes:.1f} min > trial_minutes {self.spec.trial_minutes:g}")


def mark(run: RunDir, record: dict, state: str, **extra):
    """The run folder says which study and trial trained it, and how the trial ended; once training has ended, a
    tracked trial's trackers get its state (a pruned trial's go with the end of its training)."""
    save_text(json.dumps(record | dict(state=state, **extra), indent=2), run.sweep)
    if state in ("complete", "failed", "interrupted"):
        tracking.send_once(run)
