"""Experiment tracking (--tracker mlflow, wandb): the run folder stays the record, tracking.json is the ledger of what
each tracker holds. Live logging and replay (tools.track) are one `Tracking.sync`: metrics.csv rows up to last.pt (step
= epoch), cv.json, the figures and files, what infer and export recorded. A failure is one warning; training goes on."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import threading
from pathlib import Path

import pandas as pd

from src.config.parsing import SAVED_EXTRA
from src.errors import ConfigError, MaskclsError, TrackerError, first_line
from src.files import fingerprint, mtime_ms, read_object, read_yaml
from src.run.atomic import save_text
from src.run.checkpoint import saved_epoch
from src.run.logging import FILE_ONLY
from src.run.rundir import RunDir, is_held, mlflow_db
from src.run.trackers import BACKENDS, SQLITE, Record, Tracker, check_target, store_uri, wandb_mode

log = logging.getLogger("maskcls")

def check(cfg) -> list[Record]:
    """The trackers cfg asks for, each checked before any work: its package importable, an MLflow store writable or
    a server answering, a W&B mode that can log. Any fault is one ConfigError line (exit 2)."""
    trackers = tuple(n for n in dict.fromkeys(cfg.tracker) if n != "none")
    if trackers and "none" in cfg.tracker:
        raise ConfigError(f"--tracker none cannot go with {','.join(trackers)}; give --tracker {','.join(trackers)}, "
                          f"or none alone")
    uri = store_uri(cfg.tracking_uri, mlflow_db(cfg.log_dir)) if "mlflow" in trackers else ""
    if cfg.tracking_uri and "mlflow" not in trackers:
        log.warning("warning: --tracking_uri %s has no effect without --tracker mlflow", cfg.tracking_uri)
    for tracker in trackers:
        check_target(tracker, uri)
    experiment = cfg.experiment or Path(cfg.log_dir).resolve().name
    return [Record(t, uri if t == "mlflow" else experiment, experiment) for t in trackers]


class Folder:
    """What the run folder holds now. `training`: the fold this process trains (its own lock, never probed)."""

    def __init__(self, run: RunDir, training: int | None, outputs: dict):
        self.run, self.outputs = run, outputs
        config = read_object(run.config, read_yaml) or {}
        self.config_mark = fingerprint(run.config)
        self.params = {k: v for k, v in config.items() if k not in SAVED_EXTRA}
        commit = str(config.get("git_commit", "unknown"))  # also under MLflow's own key: the UI's Source column
        self.run_tags = {"git_commit": commit, "mlflow.source.git.commit": commit, "run_dir": str(run.root.resolve()),
                         "git_dirty": str(config.get("git_dirty", "unknown")).lower(),
                         "recipes": ", ".join(config.get("recipes") or []) or "none"}
        self.folds, self.states = {}, {}  # fold -> (last epoch saved, its rows); fold or "run" -> (k, state, end ms)
        for k in run.folds():
            epoch, finished = saved_epoch(run.last(k))
            state = "FINISHED" if finished else "RUNNING" if k == training or is_held(run.fold_lock_file(k)) else "KILLED"
            self.folds[k], self.states[str(k)] = (epoch, self.rows(k, epoch)), (k, state, mtime_ms(run.last(k)))
        self.cv, self.cv_mark = read_object(run.cv), fingerprint(run.cv)
        self.sweep, self.sweep_mark = read_object(run.sweep), fingerprint(run.sweep)
        planned = range(int(config.get("n_folds", 0))) if config.get("fold") == "all" else self.folds
        states = {name: state for name, (_, state, _) in self.states.items()}
        done = self.folds and all(states.get(str(k)) == "FINISHED" for k in planned)
        self.status = "RUNNING" if "RUNNING" in states.values() else "FINISHED" if done else "KILLED"
        self.states["run"] = (None, self.status, max(filter(None, [mtime_ms(run.cv), *(
            end for _, _, end in self.states.values())]), default=None))

    def rows(self, k: int, upto: int) -> list[dict]:
        """Fold k's metrics.csv rows up to epoch `upto`: [{epoch, metrics}]."""
        try:
            table = pd.read_csv(self.run.fold_metrics(k))
        except (OSError, ValueError):
            return []
        table = table[table["epoch"] <= upto].drop(columns=["fold", "best_f1"], errors="ignore")  # not metrics
        return [dict(epoch=int(r.pop("epoch")), metrics={key: float(v) for key, v in r.items() if math.isfinite(v)})
                for r in table.drop_duplicates("epoch", keep="last").sort_values("epoch").to_dict("records")]

    def files(self) -> list[tuple]:
        """(name in the ledger, path, fold or None, artifact folder, W&B image key or an output's role) of each file
        sent: the run's, then what infer and export recorded."""
        run = self.run
        named = [(p.name, p, None) for p in (run.config, run.cv, run.decision, run.errors, run.oof_confusion)]
        named += [(f"fold{k}/confusion.png", run.confusion(k), k) for k in self.folds]
        out = [(name, p, k, None, name.removesuffix(".png") if name.endswith(".png") else None) for name, p, k in named]
        return out + [(f"output:{path}", Path(path), None, "inference" if entry["kind"] == "infer" else "export", role)
                      for entry in self.outputs.values() for role, path in entry["files"].items()]


def send(backend: Tracker, rec: Record, folder: Folder, save) -> collections.Counter:
    """Send `backend` what the folder holds and `rec` says it lacks, recording in `rec` what each call returns of the
    part it sent (`save` writes the ledger after each fold's epochs); how many of each went. The runs go first, the
    states last."""
    n = collections.Counter()
    ids = backend.begin(rec, folder.run_tags, folder.params, rec.params != folder.config_mark)
    n["runs"] += rec.run_id is None
    (rec.experiment_id, rec.run_id), rec.params = ids, folder.config_mark
    for k, (epoch, rows) in folder.folds.items():
        restarted = rec.epochs.get(str(k), -1) > epoch  # the fold restarted from scratch (its last.pt deleted)
        made = backend.fold(rec, k, folder.run_tags, restarted)
        if made is not None:
            rec.folds[str(k)] = made
            n["runs"] += 1
        rows = [r for r in rows if r["epoch"] > (-1 if restarted else rec.epochs.get(str(k), -1))]
        if rows:
            n["epochs"] += backend.metrics(rec, k, rows)
            rec.epochs[str(k)] = rows[-1]["epoch"]
            save()
    if folder.cv and rec.cv != folder.cv_mark:
        values = {k: v for k, v in folder.cv.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values |= {f"fold{k}_f1": v for k, v in (folder.cv.get("fold_f1") or {}).items()}
        backend.metrics(rec, None, [dict(epoch=0, metrics=values)])
        rec.cv = folder.cv_mark
        n["cv"] += 1
    for name, path, k, artifact_dir, image in folder.files():
        mark = fingerprint(path)
        if mark is not None and rec.files.get(name) != mark:
            if image == "submission":  # a submission may be large and is shared anyway: its digest
                backend.tags(rec, {"submission": str(path), "submission_sha256": mark})
            else:
                backend.file(rec, k, path, artifact_dir, image if artifact_dir is None else None)
            rec.files[name] = mark
            n["files"] += 1
    if folder.sweep and rec.sweep != folder.sweep_mark:
        backend.tags(rec, {key: folder.sweep.get(key, "") for key in ("study", "trial", "state")})
        rec.sweep = folder.sweep_mark
    for name, (k, status, ended) in folder.states.items():
        if rec.status.get(name) != status:
            backend.status(rec, k, status, ended)
            rec.status[name] = status
    return n


def load_ledger(run: RunDir) -> tuple[dict, dict]:
    """tracking.json as ({key: Record}, {output key: {kind, files}})."""
    saved = read_object(run.tracking) if run.tracking.exists() else {}
    if saved is None:
        raise ConfigError(f"{run.tracking}: not a readable tracking record; fix it, or delete it to track the run "
                          f"afresh (as new tracker runs)")
    names = {f.name for f in dataclasses.fields(Record)}  # a ledger may hold keys of another version: left out
    return {key: Record(**{k: v for k, v in t.items() if k in names}) for key, t in saved.get("targets", {}).items()}, \
        saved.get("outputs", {})


def save_ledger(run: RunDir, targets: dict, outputs: dict):
    """tracking.json written atomically, where it changed."""
    text = json.dumps(dict(outputs=outputs, targets={key: {k: v for k, v in dataclasses.asdict(r).items() if v is not
                                                           None} for key, r in targets.items()}), indent=1, sort_keys=True)
    if not run.tracking.exists() or run.tracking.read_text() != text + "\n":
        save_text(text + "\n", run.tracking)


class Tracking:
    """The trackers of one run for this process: those the ledger names and those `wanted` adds, until close() (the
    run's records close them however training ends). `strict` (tools.track): a failure is an error; else one warning
    per tracker, after which this process leaves it. Training asks for syncs with `request`; they run on the run's
    tracking thread, so a tracker that takes seconds to answer never holds the training loop or its writes."""

    def __init__(self, run: RunDir, wanted: list[Record] = (), strict: bool = False):
        self.run, self.strict, self.down, self.finished, self.backends = run, strict, set(), False, {}
        self.adding = {}  # outputs to record in the ledger at the next sync (add_outputs)
        self.asked: tuple | None = None  # (the fold training then,) of a sync asked for and not begun
        self.closing, self.thread, self.wake = False, None, threading.Condition()
        self.requested = self.synced = 0  # request numbers: the last asked, the last met
        self.hurrying = 0  # open hurry() blocks: no request waits meanwhile
        try:
            self.records = load_ledger(run)[0]
        except ConfigError as e:
            if strict:
                raise
            log.warning("warning: tracking is off for this process: %s", e)
            self.records = {}
        for rec in wanted:
            self.records.setdefault(rec.key, rec)  # each keeps the experiment it was tracked in
        # a request waits for its sync however long a local store takes; for a server only while it is not hurried
        self.remote = any(BACKENDS[rec.tracker].remote(rec) for rec in self.records.values())

    def sync(self, training: int | None = None, final: bool = False) -> dict:
        """Send every tracker what it lacks; {tracker key: counts}. A tracker that failed earlier in this process is
        left alone, except for one quiet try when `final`."""
        out = {}
        if not self.records:
            return out
        try:
            with self.run.track_lock():
                targets, outputs = load_ledger(self.run)
                outputs |= self.adding
                folder = Folder(self.run, training, outputs)
                self.finished = folder.status == "FINISHED"
                for key, spec in self.records.items():
                    if key in self.down and not final:
                        continue
                    rec = targets.setdefault(key, Record(spec.tracker, spec.where, spec.experiment))
                    try:
                        backend = self.backends[key] = self.backends.get(key) or BACKENDS[rec.tracker](rec, self.run)
                        with backend.lock():
                            out[key] = send(backend, rec, folder, lambda: save_ledger(self.run, targets, outputs))
                        rec.failed = None
                        self.down.discard(key)
                    except Exception as e:  # a tracker's failure, whatever it raises, never costs the run
                        rec.failed = f"{datetime.datetime.now():%Y-%m-%dT%H:%M:%S} {type(e).__name__}: {first_line(e)}"
                        self.fail(key, e, quiet=key in self.down)
                    finally:
                        save_ledger(self.run, targets, outputs)
        except MaskclsError as e:  # the lock or tracking.json itself (a read-only run folder)
            if self.strict:
                raise
            self.fail(None, e, quiet=bool(self.down))
        return out

    def fail(self, key: str | None, error: Exception, quiet: bool):
        what = "tracker {} ({})".format(*key.split(" ", 1)) if key else f"tracking of run {self.run.name}"
        line = f"{what} failed: {type(error).__name__}: {first_line(error)}"
        if self.strict:
            raise TrackerError(f"{line}; {self.run.tracking} keeps what was not sent: run this again once it is back")
        self.down |= {key} if key else set(self.records)
        if quiet:
            log.info("%s (still not sent)", line, extra=FILE_ONLY)
        else:
            log.warning("warning: %s; training goes on, %s records what was not sent, and python -m tools.track "
                        "--run %s --log_dir %s sends it", line, self.run.tracking.name, self.run.name, self.run.log_dir)

    def request(self, training: int | None = None, wait: bool = False):
        """Ask for a sync (`training`: the fold this process trains) on the tracking thread. Requests made while a
        sync runs are met by one sync after it: it sends everything the trackers lack. With `wait`, return once it is
        done; where a tracker answers over a network, also as soon as a hurry() block says the caller's thread is
        needed, so a server that takes seconds never holds the training loop (a local store is as quick as the run's
        own writes, and is then always up to date)."""
        if not self.records:
            return
        with self.wake:
            self.requested += 1
            n, self.asked = self.requested, (training,)
            self.wake.notify_all()
            if self.thread is None:
                self.thread = threading.Thread(target=self.serve, name=f"tracking {self.run.name}", daemon=True)
                self.thread.start()
            if wait:
                self.wake.wait_for(lambda: self.synced >= n or (self.remote and self.hurrying) or self.closing)

    @contextlib.contextmanager
    def hurry(self):
        """For the block, no request waits for its sync: the thread that would wait is needed."""
        with self.wake:
            self.hurrying += 1
            self.wake.notify_all()
        try:
            yield
        finally:
            with self.wake:
                self.hurrying -= 1

    def serve(self):
        """The tracking thread: a sync for each request, until close()."""
        while True:
            with self.wake:
                self.wake.wait_for(lambda: self.asked is not None or self.closing)
                if self.asked is None:
                    return
                (training,), self.asked, n = self.asked, None, self.requested
            try:
                self.sync(training)
            except Exception as e:  # whatever it raises, tracking never costs the run
                self.fail(None, e, quiet=bool(self.down))
            with self.wake:
                self.synced = n
                self.wake.notify_all()

    def close(self, training: int | None = None, send: bool = True):
        """The tracking thread's syncs done, a last sync (run and fold states; a tracker down since gets one quiet
        try), then each tracker closes. Without `send` (a signal) a sync still running gets a second, and the
        trackers are left as they are if it has not ended."""
        if self.thread is not None:
            with self.wake:
                self.closing = True
                self.wake.notify_all()
            self.thread.join(None if send else 1.0)
            if self.thread.is_alive():
                return
        if send:
            self.sync(training, final=True)
        for key, backend in self.backends.items():
            try:
                backend.close(self.finished)
            except Exception as e:
                self.fail(key, e, quiet=True)
        self.backends.clear()


def described(rec: Record, run: RunDir) -> str:
    """Where a tracker keeps the run, and how to look."""
    if rec.tracker == "wandb":
        mode, offline = wandb_mode(), f"; upload with: wandb sync {run.wandb / 'offline-run-*'}"
        return f"W&B {mode} (WANDB_MODE {os.environ.get('WANDB_MODE') or 'unset'}), project {rec.where}, group " \
               f"{run.name}{offline if mode in ('offline', 'dryrun') else ''}"
    ui = f" (open it with: mlflow ui --backend-store-uri {rec.where} --host 127.0.0.1)" if rec.where.startswith(SQLITE) \
        else ""
    return f"MLflow {rec.where}, experiment {rec.experiment}{ui}"


def start(wanted: list[Record], run: RunDir) -> Tracking:
    """The live tracking of a training run: the trackers asked for and those the run was tracked with (maybe none)."""
    tracking = Tracking(run, wanted)
    for rec in tracking.records.values():
        log.info("tracking: %s", described(rec, run))
    return tracking


def send_once(run: RunDir):
    """One sync of a tracked run, then its trackers close: what a process adds after training (a trial's last state)."""
    Tracking(run).close()


def add_outputs(wanted: list[Record], runs: list[RunDir], kind: str, files: dict):
    """infer's or export's outputs ({role: path}; the first names them) recorded in each tracked run's ledger, then
    sent: the submission's digest and its settings file, or model.onnx and model.json."""
    files = {role: str(Path(path).resolve()) for role, path in files.items()}
    for run in (r for r in runs if wanted or r.tracking.exists()):
        tracking = Tracking(run, wanted)
        tracking.adding = {next(iter(files.values())): dict(kind=kind, files=files)}
        tracking.close()
        log.info("tracking: %s outputs of run %s sent to %s", kind, run.name,
                 ", ".join(key for key in tracking.records if key not in tracking.down))


def replay(cfg) -> list[str]:
    """python -m tools.track: send a run to its trackers (and to --tracker); what they already hold is not sent again.
    Returns one line per tracker."""
    if not cfg.run:
        raise ConfigError("--run names the run whose folder is sent (<log_dir>/<run>)")
    run = RunDir(cfg.log_dir, cfg.run)
    if not run.exists:
        raise ConfigError(f"{run.root} is not a run (no config.yaml); give --run of a run in --log_dir {cfg.log_dir}")
    study = (read_object(run.sweep) or {}).get("study", "")  # a sweep trial's trackers: the study's experiment
    wanted = check(dataclasses.replace(cfg, experiment=cfg.experiment or study))
    tracking = Tracking(run, wanted, strict=True)
    if not tracking.records:
        raise ConfigError(f"run {run.name} was never tracked ({run.tracking.name} is missing): give --tracker "
                          f"mlflow, wandb or both")
    for rec in (r for key, r in tracking.records.items() if key not in {w.key for w in wanted}):
        check_target(rec.tracker, rec.where)
    counts = tracking.sync()
    tracking.close(send=False)
    return [f"{described(rec, run)}: " + (", ".join(f"{v} {k}" for k, v in sorted(counts.get(key, {}).items()) if v)
                                          or "nothing new to send") for key, rec in tracking.records.items()]
