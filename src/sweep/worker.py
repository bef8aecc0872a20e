"""sweep.py's work: one worker of a study. Each trial is an ordinary run trained by the real trainer, pruned on the
first trained fold's per-epoch validation F1; workers stop once the study's n_trials have run, counted over all of
them, and wait for trials still running elsewhere so that one whose worker died is retried."""
from __future__ import annotations

import difflib
import json
import logging
import shlex
import time

import optuna
from optuna.trial import TrialState

from src.config.parsing import fields_of, parse
from src.config.schema import SweepConfig, TrainConfig
from src.errors import ConfigError, Interrupted, MaskclsError
from src.engine import trainer
from src.run.atomic import save_text
from src.run.logging import setup_logging
from src.run.rundir import RunDir, list_runs
from src.sweep import study as studies
from src.sweep.space import SweepSpec, load_spec, option_args

log = logging.getLogger("maskcls")
# a trial's own failure (bad data, a NaN loss, a size the model cannot take) fails that trial and the sweep goes on;
# Ctrl-C or SIGTERM (Interrupted) stops the worker
TRIAL_ERRORS = tuple(c for c in MaskclsError.__subclasses__() if not issubclass(c, Interrupted))


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
    own, train_args = split_args(argv)
    cfg = parse(own, SweepConfig)
    if not cfg.study:
        raise ConfigError("--study names the study (its trials' runs are <study>-<trial number>)")
    fixed = parse(train_args, TrainConfig)  # log_dir, and every fixed key checked before anything starts
    storage = studies.open_storage(cfg.storage, fixed.log_dir, cfg.heartbeat_grace)
    if cfg.show:
        print(studies.show_text(studies.load_study(storage, cfg.study)))
        return 0
    if not cfg.sweep:
        raise ConfigError("--sweep names the sweep file (experiments/sweeps/*.yaml); --show prints a study instead")
    spec = load_spec(cfg.sweep, train_args)
    Worker(cfg, spec, train_args, storage).run()
    return 0


class Worker:
    def __init__(self, cfg: SweepConfig, spec: SweepSpec, train_args: list[str], storage):
        self.cfg, self.spec, self.train_args, self.storage = cfg, spec, train_args, storage
        self.current: int | None = None  # the trial this worker is training
        self.n_trials = cfg.n_trials or spec.n_trials
        self.log_dir = parse(train_args).log_dir
        self.study = optuna.create_study(study_name=cfg.study, storage=storage, direction="maximize",
                                         sampler=spec.make_sampler(), pruner=spec.make_pruner(), load_if_exists=True)
        self.check_same_sweep()
        self.check_foreign_runs()

    def record(self) -> dict:
        return self.spec.record() | dict(fixed=self.train_args)

    def check_same_sweep(self):
        """A study runs one search: a worker that brings another sweep file or other fixed keys is refused."""
        saved = self.study.user_attrs.get("sweep")
        if saved is None:
            self.study.set_user_attr("sweep", self.record())
            return
        mine = json.loads(json.dumps(self.record()))
        differ = [k for k in mine if saved.get(k) != mine[k]]
        if differ:
            raise ConfigError(f"study {self.cfg.study} was started with another {differ[0]} ({saved.get(differ[0])!r}, "
                              f"now {mine[differ[0]]!r}); join it with the same sweep file and fixed keys, or use "
                              f"another --study")

    def check_foreign_runs(self):
        """Run folders named like this study's trials that none of its trials trained (a study deleted and started
        again) would be resumed as if they were its own: refused."""
        known = {t.user_attrs.get("run") for t in self.study.get_trials(deepcopy=False)}
        prefix = f"{self.cfg.study}-"
        foreign = [r.name for r in list_runs(self.log_dir) if r.name.startswith(prefix) and r.name not in known
                   and r.name[len(prefix):].isdigit()]
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
            if timeout is not None and time.monotonic() - start > timeout:
                log.info("sweep %s: this worker's timeout of %g s is spent", self.cfg.study, timeout)
                break
            try:
                self.study.optimize(self.objective, n_trials=1, catch=TRIAL_ERRORS, gc_after_trial=True)
            except Interrupted:
                self.queue_again()
                raise
        finished = [t for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        log.info("sweep %s: %d trials counted, %d finished; best %s", self.cfg.study,
                 len(studies.counted(self.study.get_trials(deepcopy=False))), len(finished),
                 f"{self.study.best_value:.4f} (trial {self.study.best_trial.number})" if finished else "none")

    def queue_again(self):
        """The trial a signal stopped is queued again like a dead worker's, so that the next worker resumes it."""
        mine = [t for t in self.study.get_trials(deepcopy=False) if t.number == self.current]
        if mine and mine[0].state == TrialState.FAIL:
            self.storage.get_heartbeat_stale_trial_callback()(self.study, mine[0])
            log.info("sweep %s: trial %d was interrupted; it is queued again and resumes its run when a worker "
                     "starts", self.cfg.study, self.current)

    def objective(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        trials = self.study.get_trials(deepcopy=False)
        frozen = next(t for t in trials if t.number == trial.number)
        if not studies.is_retry(frozen):
            earlier = [t for t in trials if t.number < trial.number]
            if len(studies.counted(earlier)) >= self.n_trials:  # other workers took the last slots meanwhile
                trial.set_user_attr(studies.SURPLUS, True)
                raise optuna.TrialPruned("surplus: the study's n_trials were already taken")
        name = studies.run_name(self.cfg.study, frozen)
        params = {p.key: p.suggest(trial) for p in self.spec.space}
        args = ["--config", str(self.spec.base), *self.train_args, *option_args(params), "--fold", self.spec.folds,
                "--name", name]
        trial.set_user_attr("run", name)
        trial.set_user_attr("command", "python train.py " + shlex.join(args))
        cfg = parse(args)
        run = RunDir(cfg.log_dir, name)
        cfg.resume = run.exists  # a retry carries on from its original's last.pt
        record = dict(study=self.cfg.study, storage=studies.shown_url(studies.storage_url(self.cfg.storage,
                                                                                              self.log_dir)),
                      trial=int(name.rsplit("-", 1)[1]), attempt=trial.number, params=params)
        first_fold: list[int] = []

        def after_epoch(k: int, epoch: int, metrics: dict):
            if not first_fold:
                first_fold.append(k)
                mark(run, record, "running")
            if k != first_fold[0]:
                return
            trial.report(metrics["val_f1"], epoch)
            if epoch < cfg.epochs - 1 and trial.should_prune():  # after the last epoch there is nothing to save
                mark(run, record, "pruned", epoch=epoch, val_f1=metrics["val_f1"])
                log.info("trial %d (%s): pruned after fold %d epoch %d, val_f1 %.4f", trial.number, name, k, epoch,
                         metrics["val_f1"])
                raise optuna.TrialPruned(f"fold {k} epoch {epoch}: val_f1 {metrics['val_f1']:.4f}")

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
        trial.set_user_attr("objective", "cv_f1_tuned" if "cv_f1_tuned" in cv else "cv_f1")
        mark(run, record, "complete", value=value)
        return value


def mark(run: RunDir, record: dict, state: str, **extra):
    """The run folder says which study and trial trained it, and how the trial ended."""
    save_text(json.dumps(record | dict(state=state, **extra), indent=2), run.sweep)
