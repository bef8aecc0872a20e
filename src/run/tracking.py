"""Experiment tracking (--tracker mlflow, wandb): a run folder's records, sent where users already look.

The run folder stays the record. Live logging and replay (python -m tools.track) are one mechanism: `Tracking.sync`
reads the folder, sends what tracking.json says each tracker lacks, and records it there. It runs under the run's
tracking lock, so processes training folds side by side and tools.track send each record once, and a SQLite store
is written by one process of the machine at a time. What it sends:
  - config.yaml: params (the resolved settings), tags (git commit, dirty, recipe files) and the file itself;
  - each fold's metrics.csv rows as far as its last.pt, to a child run per fold at step = epoch. An epoch goes once
    its last.pt is saved, so a kill and --resume never send a step twice; live, epoch e goes when epoch e+1's row
    is written or when the fold ends;
  - cv.json's figures (argmax and tuned; step = how often cv.json was sent before), the out-of-fold confusion
    figure, each fold's confusion.png, errors.png where it exists, cv.json and decision.json;
  - a sweep trial's study, trial and state (sweep.json); what infer and export recorded of their outputs.
A run tracked once stays tracked: --resume, infer and export send to the trackers tracking.json names, and to those
--tracker adds. A tracker that fails is one warning; training goes on, tracking.json says what failed, and
tools.track sends what is missing later.
"""
from __future__ import annotations

import collections
import datetime
import hashlib
import json
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from src.config.parsing import SAVED_EXTRA
from src.errors import CheckpointError, ConfigError, MaskclsError, RunBusy, TrackerError
from src.files import read_json, read_yaml
from src.run.atomic import save_text
from src.run.checkpoint import FOR_RESUME, read
from src.run.logging import FILE_ONLY
from src.run.oof import read_oof
from src.run.rundir import RunDir, is_held, mlflow_db
from src.run.trackers import (SQLITE, Spec, backend, check_store, check_wandb, first_line, http_limits, require,
                              store_uri, wandb_mode)

log = logging.getLogger("maskcls")

NOT_METRICS = ("fold", "epoch", "best_f1")  # metrics.csv columns that are not a metric of the epoch
FINGERPRINT_BYTES = 8 << 20  # files up to this size are told apart by content, larger ones by size and time


@dataclass(frozen=True)
class Wanted:
    """The trackers an invocation asks for (--tracker, --tracking_uri, --experiment), checked."""
    trackers: tuple = ()
    uri: str = ""  # the MLflow store, normalised (an absolute SQLite path, or a server's URL)
    experiment: str = ""  # "" = the default: a sweep trial's study, else the log_dir's folder name


def chosen(cfg) -> tuple:
    names = tuple(dict.fromkeys(cfg.tracker))
    if "none" in names and len(names) > 1:
        others = ",".join(n for n in names if n != "none")
        raise ConfigError(f"--tracker none cannot go with {others}; give --tracker {others}, or none alone")
    return tuple(n for n in names if n != "none")


def check(cfg) -> Wanted:
    """The trackers cfg asks for, each checked before any work: its package importable, an MLflow store writable or
    a server answering, a W&B mode that can log. Any fault is one ConfigError line (exit 2)."""
    trackers = chosen(cfg)
    uri = store_uri(cfg.tracking_uri, mlflow_db(cfg.log_dir)) if "mlflow" in trackers else ""
    if cfg.tracking_uri and "mlflow" not in trackers:
        log.warning("warning: --tracking_uri %s has no effect without --tracker mlflow", cfg.tracking_uri)
    for tracker in trackers:
        require(tracker)
    if uri:
        check_store(uri)
    if "wandb" in trackers:
        check_wandb()
    return Wanted(trackers, uri, cfg.experiment)


def check_spec(spec: Spec):
    """check() for a destination tracking.json names (tools.track sends to it and wants to know first)."""
    require(spec.tracker)
    if spec.tracker == "mlflow":
        check_store(spec.where)
    else:
        check_wandb()


def default_experiment(run: RunDir) -> str:
    sweep = read_record(run.sweep)
    return str(sweep["study"]) if sweep and sweep.get("study") else run.log_dir.resolve().name


def specs_of(wanted: Wanted, run: RunDir) -> list[Spec]:
    experiment = wanted.experiment or default_experiment(run)
    return [Spec("mlflow", wanted.uri, experiment) if t == "mlflow" else Spec("wandb", experiment, experiment)
            for t in wanted.trackers]


# the run folder --------------------------------------------------------------------------------------------------

def read_record(path: Path) -> dict | None:
    """A JSON object the run folder holds (cv.json, sweep.json, tracking.json), read with the guarded reader; None
    when missing, unreadable or not an object: the trackers get it once it is whole."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_config(path: Path) -> dict:
    """config.yaml as a mapping, read with the guarded reader; {} when missing or unreadable (sent once it is)."""
    try:
        config = read_yaml(path)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def fingerprint(path: Path) -> str | None:
    """What tells a file's versions apart: its content's digest, or size and time for a large file; None if absent."""
    try:
        stat = path.stat()
        if stat.st_size > FINGERPRINT_BYTES:
            return f"{stat.st_size}:{stat.st_mtime_ns}"
        return hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    except OSError:
        return None


def mtime_ms(path: Path) -> int | None:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return None


_SAVED: dict = {}  # last.pt path -> (size and time, epoch, finished): a last.pt is read again only once replaced


def saved_epoch(last: Path) -> tuple[int, bool]:
    """(the epoch last.pt saved, whether the fold finished); (-1, False) without a readable one."""
    try:
        stat = last.stat()
    except OSError:
        return -1, False
    mark = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if _SAVED.get(last, (None,))[0] != mark:
        try:
            state = read(last, FOR_RESUME, mmap=True)
            _SAVED[last] = (mark, int(state["epoch"]), bool(state.get("finished")))
        except (CheckpointError, KeyError, TypeError, ValueError):
            return -1, False
    return _SAVED[last][1:]


@dataclass
class FoldView:
    epoch: int  # the last epoch its last.pt saved; -1 before any
    finished: bool
    status: str  # RUNNING, FINISHED or KILLED (stopped before its end: interrupted, pruned, failed)
    rows: list  # [{epoch, metrics}] of the saved epochs, in order


class Folder:
    """What the run folder holds now, as the trackers get it. `training`: the fold this process trains now (its
    lock is this process's own, so it is never probed: closing a probe would drop the lock)."""

    def __init__(self, run: RunDir, training: int | None, outputs: dict):
        self.run = run
        config = read_config(run.config)
        self.config_mark = fingerprint(run.config)
        self.params = {k: v for k, v in config.items() if k not in SAVED_EXTRA}
        self.run_tags = dict(git_commit=str(config.get("git_commit", "unknown")),
                             git_dirty=str(config.get("git_dirty", "unknown")).lower(),
                             recipes=", ".join(config.get("recipes") or []) or "none",
                             run_dir=str(run.root.resolve()))
        self.started_ms = mtime_ms(run.config)
        self.folds = {k: self.fold(k, training) for k in run.folds()}
        self.cv, self.cv_mark = read_record(run.cv), fingerprint(run.cv)
        self.sweep, self.sweep_mark = read_record(run.sweep), fingerprint(run.sweep)
        self.outputs = outputs
        running = [k for k, v in self.folds.items() if v.status == "RUNNING"]
        planned = range(int(config.get("n_folds", 0))) if config.get("fold") == "all" else self.folds
        done = self.folds and all(k in self.folds and self.folds[k].finished for k in planned)
        self.status = "RUNNING" if running else "FINISHED" if done else "KILLED"

    def fold(self, k: int, training: int | None) -> FoldView:
        epoch, finished = saved_epoch(self.run.last(k))
        if finished:
            status = "FINISHED"
        elif k == training or is_held(self.run.fold_lock_file(k)):
            status = "RUNNING"
        else:
            status = "KILLED"
        return FoldView(epoch, finished, status, self.rows(k, epoch))

    def rows(self, k: int, upto: int) -> list[dict]:
        path = self.run.fold_metrics(k)
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError):
            return []
        out = {}
        for record in table.to_dict("records"):
            epoch = int(record["epoch"])
            if epoch <= upto:
                out[epoch] = dict(epoch=epoch, metrics={
                    key: float(v) for key, v in record.items() if key not in NOT_METRICS
                    and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)})
        return [out[e] for e in sorted(out)]

    def fold_started_ms(self, k: int) -> int | None:
        """When fold k started: its metrics.csv's time less its epochs' time_s (a replay gives the fold its real span);
        before any epoch, its folder's time (just made)."""
        ended, spent = mtime_ms(self.run.fold_metrics(k)), sum(r["metrics"].get("time_s", 0) for r in self.folds[k].rows)
        return int(ended - 1000 * spent) if ended is not None and spent else mtime_ms(self.run.fold(k))

    def cv_values(self) -> dict:
        """cv.json's figures: macro-F1 and per-task scores, argmax and tuned, and each fold's F1."""
        values = {k: v for k, v in self.cv.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values |= {f"fold{k}_f1": v for k, v in (self.cv.get("fold_f1") or {}).items()}
        return values

    def files(self) -> list[tuple]:
        """(name in tracking.json, path, fold or None, artifact folder, W&B image key or None) of each file sent."""
        run = self.run
        out = [("config.yaml", run.config, None, None, None), ("cv.json", run.cv, None, None, None),
               ("decision.json", run.decision, None, None, None), ("errors.png", run.errors, None, None, "errors")]
        out += [(f"fold{k}/confusion.png", run.confusion(k), k, None, f"fold{k}/confusion") for k in self.folds]
        return out

    def output_files(self) -> list[tuple]:
        """(name, path, kind, role) of what infer and export recorded: a submission (its digest), its settings, and
        an export's model.onnx and model.json."""
        return [(f"output:{path}", Path(path), entry["kind"], role)
                for entry in self.outputs.values() for role, path in entry["files"].items()]

    def oof_figure(self, folder: Path) -> Path | None:
        """The confusion matrix of every fold's out-of-fold rows, drawn into `folder`."""
        from src.metrics import confusion
        from src.run.figures import confusion_figure, save_png

        oof = read_oof(self.run, self.folds)
        if oof.empty:
            return None
        path = folder / "confusion.png"
        title = (f"{self.run.name}: out-of-fold rows of {oof['fold'].nunique()} fold(s), CV macro-F1 "
                 f"{self.cv.get('cv_f1', 0):.4f}")
        save_png(confusion_figure(confusion(oof["label"], oof["pred"]), title), path)
        return path


# sending ---------------------------------------------------------------------------------------------------------

def send(tracker, t: dict, folder: Folder, save) -> collections.Counter:
    """Send `tracker` what the folder holds and its record `t` says it lacks, recording each part once sent; returns
    how many of each went. The runs go first (the rest goes into them), the states last (a run ends after its data)."""
    sending = Sending(tracker, t, folder, save)
    for part in (sending.runs, sending.cut_short, sending.epochs, sending.cv, sending.files, sending.sweep,
                 sending.outputs, sending.states):
        part()
    return sending.n


class Sending:
    """One tracker's send of one folder, part by part. `t` is the tracker's record in tracking.json; `save()` writes
    it where a crash would otherwise lose what the tracker already holds (made runs, rows under way)."""

    def __init__(self, tracker, t: dict, folder: Folder, save):
        self.tracker, self.t, self.folder, self.save = tracker, t, folder, save
        self.n = collections.Counter()
        for part in ("epochs", "files", "status"):
            t.setdefault(part, {})

    def runs(self):
        """The tracker's run of this maskcls run, and its params and tags whenever config.yaml changed."""
        t, folder = self.t, self.folder
        if self.tracker.open(t, folder):
            self.n["runs"] += 1
            self.save()
        if t.get("params") != folder.config_mark:
            self.tracker.params(t, folder.params, folder.run_tags)
            t["params"] = folder.config_mark

    def cut_short(self):
        """A send of rows that a crash cut short: the tracker is asked what arrived, so none goes twice."""
        t = self.t
        for k, sent_to in (t.pop("sending", None) or {}).items():
            arrived = self.tracker.last_epoch(t, int(k)) if k in t.get("folds", {}) else None
            if arrived is not None:
                t["epochs"][k] = min(arrived, sent_to)
            self.save()

    def epochs(self):
        """Each fold's child run and its saved epochs not sent yet, the fold's range marked `sending` meanwhile."""
        t = self.t
        for k, view in self.folder.folds.items():
            done = t["epochs"].get(str(k), -1)
            again = done > view.epoch  # the fold restarted from scratch (its last.pt deleted)
            if self.tracker.child(t, k, self.folder, again):
                self.n["runs"] += 1
                self.save()
            if again:
                done = t["epochs"][str(k)] = -1
            rows = [r for r in view.rows if r["epoch"] > done]
            if rows:
                t["sending"] = {str(k): rows[-1]["epoch"]}
                self.save()
                self.tracker.rows(t, k, rows)
                t["epochs"][str(k)] = rows[-1]["epoch"]
                del t["sending"]
                self.save()
                self.n["epochs"] += len(rows)

    def cv(self):
        """cv.json's figures whenever it changed (step = how often it went before), with the out-of-fold figure."""
        t, folder = self.t, self.folder
        if not folder.cv or t.get("cv") == folder.cv_mark:
            return
        self.tracker.cv(t, folder.cv_values(), t.get("cv_sent", 0))
        with tempfile.TemporaryDirectory() as tmp:
            figure = folder.oof_figure(Path(tmp))
            if figure is not None:
                self.tracker.file(t, None, figure, None, "confusion")
        t["cv"], t["cv_sent"] = folder.cv_mark, t.get("cv_sent", 0) + 1
        self.n["cv"] += 1

    def files(self):
        """The run's files and figures, each version once."""
        for name, path, k, artifact_dir, image in self.folder.files():
            mark = fingerprint(path)
            if mark is not None and self.t["files"].get(name) != mark:
                self.tracker.file(self.t, k, path, artifact_dir, image)
                self.t["files"][name] = mark
                self.n["files"] += 1

    def sweep(self):
        """A sweep trial's study, trial and state, as tags."""
        folder = self.folder
        if folder.sweep and self.t.get("sweep") != folder.sweep_mark:
            self.tracker.tags(self.t, {key: folder.sweep.get(key, "") for key in ("study", "trial", "state")})
            self.t["sweep"] = folder.sweep_mark

    def outputs(self):
        """infer's and export's outputs: a submission as its digest (the file may be large and is shared anyway),
        the rest as files."""
        t = self.t
        for name, path, kind, role in self.folder.output_files():
            mark = fingerprint(path)
            if mark is None or t["files"].get(name) == mark:
                continue
            if role == "submission":
                self.tracker.tags(t, {"submission": str(path),
                                      "submission_sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
            else:
                self.tracker.file(t, None, path, "inference" if kind == "infer" else "export", None)
            t["files"][name] = mark
            self.n["files"] += 1

    def states(self):
        """Each fold's state and the run's, as they changed; a run ends when its last file was written."""
        t, run = self.t, self.folder.run
        for k, view in self.folder.folds.items():
            if t["status"].get(str(k)) != view.status:
                self.tracker.status(t, k, view.status, mtime_ms(run.last(k)))
                t["status"][str(k)] = view.status
        if t["status"].get("run") != self.folder.status:
            ended = [mtime_ms(run.cv), *(mtime_ms(run.last(k)) for k in self.folder.folds)]
            self.tracker.status(t, None, self.folder.status, max(filter(None, ended), default=None))
            t["status"]["run"] = self.folder.status


def write_state(run: RunDir, state: dict):
    """tracking.json, written atomically."""
    save_text(json.dumps(state, indent=1, sort_keys=True) + "\n", run.tracking)


class Saver:
    """save(): tracking.json written (atomically) when the state differs from what was last written."""

    def __init__(self, run: RunDir, state: dict):
        self.run, self.state = run, state
        self.last = json.dumps(state, sort_keys=True) if run.tracking.exists() else None

    def __call__(self):
        now = json.dumps(self.state, sort_keys=True)
        if now != self.last:
            write_state(self.run, self.state)
            self.last = now


def load_state(run: RunDir) -> dict:
    """tracking.json: {targets: {key: record}, outputs: {key: {kind, files}}}."""
    if not run.tracking.exists():
        return dict(targets={}, outputs={})
    state = read_record(run.tracking)
    if state is None:
        raise ConfigError(f"{run.tracking}: not a readable tracking record; fix it, or delete it to track the run "
                          f"afresh (as new tracker runs)")
    state.setdefault("targets", {})
    state.setdefault("outputs", {})
    return state


class Target:
    def __init__(self, spec: Spec, run: RunDir):
        self.spec, self.key, self.tracker = spec, spec.key, backend(spec, run)


_OPEN: list = []  # Tracking objects not closed yet: close_all() ends them when train() ends, however it ends


class Tracking:
    """The trackers of one run for this process: those tracking.json names, and those `wanted` adds. `strict`
    (tools.track): a failure is an error; else one warning per tracker, after which this process leaves it."""

    def __init__(self, run: RunDir, wanted: Wanted | None = None, strict: bool = False):
        self.run, self.strict = run, strict
        self.down: set[str] = set()
        self.busy: set[str] = set()  # trackers another process has open (a W&B run): that process sends to them
        self.finished = False
        try:
            state = load_state(run)
        except ConfigError as e:
            if strict:
                raise
            log.warning("warning: tracking is off for this process: %s", e)
            self.targets = []
            return
        specs = {t_key: Spec.of(t) for t_key, t in state["targets"].items()}
        for spec in specs_of(wanted, run) if wanted else []:
            if spec.key in specs and wanted.experiment and specs[spec.key].experiment != spec.experiment:
                log.info("tracking: %s keeps run %s in experiment %s (recorded in %s)", spec.key, run.name,
                         specs[spec.key].experiment, run.tracking)
            specs.setdefault(spec.key, spec)
        self.targets = [Target(spec, run) for spec in specs.values()]
        if self.targets:
            _OPEN.append(self)

    def __bool__(self):
        return bool(self.targets)

    def announce(self):
        """One line per tracker at the start of training: where to look."""
        for target in self.targets:
            spec = target.spec
            if spec.tracker == "mlflow":
                see = (f"open it with: mlflow ui --backend-store-uri {spec.where} --host 127.0.0.1"
                       if spec.where.startswith(SQLITE) else "a tracking server")
                log.info("tracking: MLflow %s, experiment %s (%s)", spec.where, spec.experiment, see)
            else:
                log.info("tracking: W&B project %s, %s%s", spec.where, wandb_mode(),
                         f"; upload with: wandb sync {self.run.wandb / 'offline-run-*'}"
                         if wandb_mode() in ("offline", "dryrun") else "")

    def sync(self, training: int | None = None, final: bool = False) -> dict:
        """Send every tracker what it lacks; {tracker key: counts}. A tracker that failed earlier in this process is
        left alone, except for one quiet try when `final`."""
        out = {}
        if not self.targets:
            return out
        try:
            with self.run.track_lock():
                state = load_state(self.run)
                folder = Folder(self.run, training, state["outputs"])
                self.finished = folder.status == "FINISHED"
                save = Saver(self.run, state)
                for target in self.targets:
                    if target.key in self.down and not final:
                        continue
                    t = state["targets"].setdefault(target.key, target.spec.record())
                    try:
                        with target.tracker.lock(), http_limits():
                            out[target.key] = send(target.tracker, t, folder, save)
                        t.pop("failed", None)
                        self.down.discard(target.key)
                    except RunBusy:  # its W&B run is open in another process, which sends this too
                        self.busy.add(target.key)
                    except Exception as e:  # a tracker's failure, whatever it raises, never costs the run
                        t["failed"] = dict(at=datetime.datetime.now().isoformat(timespec="seconds"),
                                           error=f"{type(e).__name__}: {first_line(e)}")
                        self.fail(target, e, quiet=target.key in self.down)
                    finally:
                        save()
        except TrackerError:
            raise
        except MaskclsError as e:  # the lock or tracking.json itself (a read-only run folder)
            if self.strict:
                raise
            self.fail(None, e, quiet=bool(self.down))
        return out

    def fail(self, target: Target | None, error: Exception, quiet: bool):
        what = f"tracker {target.spec.tracker} ({target.spec.where})" if target else f"tracking of run {self.run.name}"
        line = f"{what} failed: {type(error).__name__}: {first_line(error)}"
        if self.strict:
            raise TrackerError(f"{line}; {self.run.tracking} keeps what was not sent: run this again once it is back")
        self.down |= {target.key} if target else {t.key for t in self.targets}
        if quiet:
            log.info("%s (still not sent)", line, extra=FILE_ONLY)
            return
        log.warning("warning: %s; training goes on, %s records what was not sent, and python -m tools.track --run "
                    "%s --log_dir %s sends it", line, self.run.tracking.name, self.run.name, self.run.log_dir)

    def close(self, training: int | None = None, send: bool = True):
        """A last sync (run and fold states; a tracker down since gets one quiet try), then each tracker closes."""
        if self not in _OPEN:
            return
        _OPEN.remove(self)
        if send:
            self.sync(training, final=True)
        for target in self.targets:
            try:
                target.tracker.close({}, self.finished)
            except Exception as e:
                self.fail(target, e, quiet=True)


def close_all():
    """End every Tracking still open (train() calls this however it ends). Never raises: the run's own outcome stands."""
    for tracking in list(_OPEN):
        try:
            tracking.close()
        except (Exception, KeyboardInterrupt):
            _OPEN.remove(tracking) if tracking in _OPEN else None


# entry points ----------------------------------------------------------------------------------------------------

def start(wanted: Wanted, run: RunDir) -> Tracking | None:
    """The live tracking of a training run: the trackers asked for and those the run was tracked with, or None."""
    if not wanted.trackers and not run.tracking.exists():
        return None
    tracking = Tracking(run, wanted)
    if not tracking:
        return None
    tracking.announce()
    return tracking


def send_once(run: RunDir):
    """One sync of a tracked run, then its trackers close: what a process adds after training ended (a sweep trial's
    final state). Never while the same process has the run's live tracking open: its locks are this process's own."""
    if run.tracking.exists():
        tracking = Tracking(run)
        if tracking:
            tracking.close()


def add_outputs(wanted: Wanted, runs: list[RunDir], kind: str, files: dict):
    """infer's or export's outputs ({role: path}; the first names them) recorded in each tracked run's tracking.json,
    then sent: the submission's digest and its settings file, or model.onnx and model.json."""
    files = {role: str(Path(path).resolve()) for role, path in files.items()}
    key = next(iter(files.values()))
    for run in runs:
        if not wanted.trackers and not run.tracking.exists():
            continue
        tracking = Tracking(run, wanted)
        if not tracking:
            continue
        try:
            with run.track_lock():
                state = load_state(run)
                state["outputs"][key] = dict(kind=kind, files=files)
                write_state(run, state)
        except MaskclsError as e:
            log.warning("warning: the %s outputs were not recorded for tracking run %s: %s", kind, run.name, e)
            _OPEN.remove(tracking)
            continue
        tracking.close()
        log.info("tracking: %s outputs of run %s sent to %s", kind, run.name, ", ".join(
            t.key for t in tracking.targets if t.key not in tracking.down))


def replay(cfg) -> list[str]:
    """python -m tools.track: send a finished or interrupted run to its trackers (and to --tracker); what they
    already hold is not sent again. Returns one line per tracker."""
    if not cfg.run:
        raise ConfigError("--run names the run whose folder is sent (<log_dir>/<run>)")
    run = RunDir(cfg.log_dir, cfg.run)
    if not run.exists:
        raise ConfigError(f"{run.root} is not a run (no config.yaml); give --run of a run in --log_dir {cfg.log_dir}")
    wanted = check(cfg)
    tracking = Tracking(run, wanted, strict=True)
    if not tracking:
        raise ConfigError(f"run {run.name} was never tracked ({run.tracking.name} is missing): give --tracker "
                          f"mlflow, wandb or both")
    asked = {spec.key for spec in specs_of(wanted, run)}
    for target in tracking.targets:
        if target.key not in asked:
            check_spec(target.spec)
    try:
        counts = tracking.sync()
    except BaseException:
        tracking.close(send=False)
        raise
    tracking.close()
    state = load_state(run)
    lines = []
    for target in tracking.targets:
        n = counts.get(target.key, collections.Counter())
        sent = ", ".join(f"{v} {k}" for k, v in sorted(n.items()) if v) or "nothing new to send"
        if target.key in tracking.busy:
            sent = "its W&B run is open in the process training the run, which sends it"
        lines.append(f"{target.tracker.where(state['targets'].get(target.key, {'experiment': target.spec.experiment}))}:"
                     f" {sent}")
    return lines
