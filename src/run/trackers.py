"""The trackers behind src/run/tracking.py, each in its tool's K-fold layout: MLflow a run with a child run per fold,
W&B a run per fold and one for the whole run grouped by its name. tracking.py decides what a tracker lacks and keeps
the ledger; a tracker (the Tracker protocol) puts each part there and returns what the ledger records of it, without
changing the Record it is handed. Each package is imported only when its tracker is chosen."""
from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from src.errors import ConfigError, MaskclsError, first_line
from src.files import mtime_ms
from src.run.atomic import check_writable, remove_stale_tmp, replace_with
from src.run.rundir import RunDir, mlflow_artifacts, store_lock

log = logging.getLogger("maskcls")

# mlflow is in requirements.txt; wandb is not (with it installed, `import timm` imports it, which slows every process
# that trains): whoever wants W&B installs it with this pin, and tests/test_run_tracking.py installs it into .cache/
PINS = {"mlflow": "mlflow==3.17.2", "wandb": "wandb==0.31.0"}
SQLITE, HTTP = "sqlite:///", ("http://", "https://")
# the MLflow client's HTTP defaults retry for minutes; a tracker must never hold training up that long (user env wins)
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MLFLOW_TABLES = {"alembic_version", "experiments", "runs", "metrics", "params", "tags"}  # any of them: MLflow made it
METRICS_PER_BATCH = 1000  # MLflow's limit of one log_batch
WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")
ONLINE = ("online", "shared", "run")  # the W&B modes that send over the network as they log


@dataclass
class Record:
    """A tracker's entry in the ledger: where it is, its ids there, the version of each part of the run it holds."""
    tracker: str  # mlflow or wandb
    where: str  # the MLflow store's URI, or the W&B project
    experiment: str  # --experiment, by default a sweep trial's study, else the log_dir's folder name
    experiment_id: str | None = None  # MLflow's
    run_id: str | None = None  # the tracker's run of the whole maskcls run
    folds: dict = field(default_factory=dict)  # fold -> the tracker's run of that fold
    epochs: dict = field(default_factory=dict)  # fold -> the last epoch sent
    files: dict = field(default_factory=dict)  # name -> the version sent (fingerprint)
    status: dict = field(default_factory=dict)  # fold, or "run" -> the state sent
    params: str | None = None  # the version of config.yaml whose params went
    cv: str | None = None  # the version of cv.json whose figures went
    sweep: str | None = None  # the version of sweep.json whose tags went
    failed: str | None = None  # when and why the last send failed

    @property
    def key(self) -> str:
        return f"{self.tracker} {self.where}"


class Tracker(Protocol):
    """One tracker's side of sending. `rec` says what it holds; each call puts one part there and returns what the
    ledger then records of it. k None: the whole run's own tracker run."""

    lock: Callable[[], AbstractContextManager]  # held while sending: one writer at a time where the store needs it

    @staticmethod
    def remote(rec: Record) -> bool:
        """Whether the tracker answers over a network (a server, an online service), in times no one bounds; a local
        store answers as fast as the run's own files are written."""

    def begin(self, rec: Record, tags: dict, params: dict, new_params: bool) -> tuple[str | None, str]:
        """(the experiment's id, the run's id), made where `rec` has none; `tags` on a new run; `params` (config.yaml's)
        sent where `new_params` (they changed since they went)."""

    def fold(self, rec: Record, k: int, tags: dict, restarted: bool) -> str | None:
        """Fold k's run id where one is made (none in `rec`, or the fold restarted from scratch: the old one KILLED);
        None where `rec`'s stands."""

    def metrics(self, rec: Record, k: int | None, rows: list[dict]) -> int:
        """Rows of {epoch, metrics} at step = epoch (k None: cv.json's figures); how many went."""

    def file(self, rec: Record, k: int | None, path: Path, artifact_dir: str | None, image: str | None):
        """A file (`artifact_dir` groups it), or a figure under the key `image`."""

    def tags(self, rec: Record, tags: dict, params: dict | None = None):
        """Tags (and params) on the whole run's tracker run."""

    def status(self, rec: Record, k: int | None, status: str, end_ms: int | None):
        """A run's state: RUNNING, FINISHED or KILLED (ended at end_ms)."""

    def close(self, finished: bool):
        """This process is done with the tracker."""


def check_target(tracker: str, where: str):
    """A tracker checked before any work: its package importable, then an MLflow store writable or a server answering
    (`where`), or a W&B mode that can log; any fault is one line."""
    try:
        importlib.import_module(tracker)
    except ImportError as e:
        place = ("it is in requirements.txt" if tracker == "mlflow" else
                 "not in requirements.txt: an extra step, see docs/tracking.md")
        raise ConfigError(f"--tracker {tracker} needs the {tracker} package, which cannot be imported "
                          f"({first_line(e)}); install it with: pip install {PINS[tracker]}   ({place})") from None
    check_store(where) if tracker == "mlflow" else check_wandb()


def store_uri(uri: str, default_db: Path) -> str:
    """The MLflow store as the ledger keeps it: a SQLite file's absolute path (the embedded default), or a server."""
    if not uri or uri.startswith(SQLITE):
        return SQLITE + str(Path(uri[len(SQLITE):] if uri else default_db).resolve())
    if uri.startswith(HTTP):
        return uri.rstrip("/")
    raise ConfigError(f"--tracking_uri {uri}: use sqlite:///PATH (an embedded store, nothing to start) or "
                      f"http://HOST:PORT (an MLflow tracking server)")


def check_store(uri: str):
    """A SQLite store that can be written (or created), or a server that answers: else one line before any work."""
    if not uri.startswith(SQLITE):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=5).close()  # a status other than 2xx raises HTTPError
        except (OSError, ValueError) as e:
            raise ConfigError(f"--tracking_uri {uri}: no MLflow server answers there ({getattr(e, 'reason', e)}); "
                              f"start it (mlflow server --host HOST --port PORT --backend-store-uri sqlite:///PATH) "
                              f"or leave --tracking_uri out for the embedded store") from None
        return
    db, cannot = Path(uri[len(SQLITE):]), f"--tracking_uri {uri}: the MLflow store cannot be written"
    if db.exists():
        try:  # a page written and rolled back: a read-only file, folder or disk refuses it, and nothing changes
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)) as con:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                con.execute("BEGIN IMMEDIATE")
                con.execute(f"PRAGMA user_version = {int(version)}")
                con.execute("ROLLBACK")
        except sqlite3.DatabaseError as e:
            if not isinstance(e, sqlite3.OperationalError):  # not a file SQLite can read: no permission helps
                raise ConfigError(f"--tracking_uri {uri}: {db} is not an SQLite database ({e}); move it away or "
                                  f"give another --tracking_uri") from None
            raise ConfigError(f"{cannot} ({e}); make it writable or give another --tracking_uri") from None
    folder = next(p for p in (db.parent, *db.parent.parents) if p.exists())
    try:
        check_writable(folder)
    except MaskclsError:
        raise ConfigError(f"{cannot}: its folder {folder} is not writable (SQLite keeps its journal there); make "
                          f"it writable or give another --tracking_uri") from None
    whole_store(db)


def store_state(db: Path) -> tuple[set[str], str | None, int]:
    """(the tables of a SQLite file, the MLflow schema revision it records or None, how many MLflow runs it holds)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        found = con.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables \
            else None
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return tables, (found[0] if found else None), int(runs)


def build_store(tmp: Path):
    """MLflow's tables and every schema migration, into a new SQLite file `tmp` (what MLflow does on first use)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine

    engine = create_sqlalchemy_engine(f"{SQLITE}{tmp}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def quiet_mlflow():
    for name in ("mlflow", "alembic"):  # schema migrations and client notes are not the run's lines
        logging.getLogger(name).setLevel(logging.WARNING)


def whole_store(db: Path):
    """The SQLite store `db` made whole before MLflow opens it. MLflow builds a new store in dozens of migrations that
    a kill can cut short, leaving a schema behind its tables that no later run can use; so a new store is built under
    a temporary name and moved in. A half-made store found (its schema behind this MLflow's) is rebuilt when it holds
    no run (one line says so); with runs it is one line saying what to move away, and nothing is deleted."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    quiet_mlflow()
    with store_lock(db):
        remove_stale_tmp(db.parent)  # the temporary store of a build that was killed
        if db.exists():
            tables, revision, runs = store_state(db)
            head = _get_latest_schema_revision()
            if revision == head:
                return
            if tables and not tables & MLFLOW_TABLES:
                raise ConfigError(f"--tracking_uri {SQLITE}{db}: an SQLite file of other tables ("
                                  f"{', '.join(sorted(tables)[:3])}), not an MLflow store; move it away or give "
                                  f"another --tracking_uri")
            if runs:
                raise ConfigError(f"--tracking_uri {SQLITE}{db}: the MLflow store's schema is at revision "
                                  f"{revision}, not this MLflow's {head}, and it holds {runs} run(s): move it away (mv "
                                  f"{db} {db}.old) to start a new store, or upgrade it (mlflow db upgrade {SQLITE}{db})")
            log.warning("warning: the MLflow store %s was half made (schema at revision %s of %s, no runs): built "
                        "it again", db, revision, head)
        replace_with(db, build_store)


def wandb_mode() -> str:
    """W&B's mode: the user's WANDB_MODE, else offline (competition servers often are)."""
    return os.environ.get("WANDB_MODE", "").strip().lower() or "offline"


def check_wandb():
    mode = wandb_mode()
    if mode not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode} is not a W&B mode; use one of: {', '.join(WANDB_MODES)} (unset: offline)")
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    key = os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_BASE_URL") or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"))
    if mode in ONLINE and not key:
        raise ConfigError(f"WANDB_MODE={mode}, but W&B finds no API key here: run wandb login or set WANDB_API_KEY, "
                          f"or unset WANDB_MODE to log offline and wandb sync later")


class MLflow:
    """One MLflow store: the experiment, a run per maskcls run, a child run per fold (step = epoch)."""

    def __init__(self, rec: Record, run: RunDir):
        from mlflow.tracking import MlflowClient

        quiet_mlflow()
        for key, value in HTTP_LIMITS.items():
            os.environ.setdefault(key, value)
        self.db = Path(rec.where[len(SQLITE):]) if rec.where.startswith(SQLITE) else None
        if self.db:
            whole_store(self.db)
        self.run, self.client = run, MlflowClient(tracking_uri=rec.where)
        # this machine's processes write a SQLite store one at a time; a server orders its own writes
        self.lock = functools.partial(store_lock, self.db) if self.db else contextlib.nullcontext

    @staticmethod
    def remote(rec: Record) -> bool:
        return not rec.where.startswith(SQLITE)

    def begin(self, rec: Record, tags: dict, params: dict, new_params: bool) -> tuple[str | None, str]:
        from mlflow.exceptions import MlflowException

        experiment_id, run_id = rec.experiment_id, rec.run_id
        if experiment_id is None:
            if self.client.get_experiment_by_name(rec.experiment) is None:
                with contextlib.suppress(MlflowException):  # another process may make it meanwhile
                    self.client.create_experiment(rec.experiment, artifact_location=mlflow_artifacts(
                        self.db).resolve().as_uri() if self.db else None)
            experiment_id = self.client.get_experiment_by_name(rec.experiment).experiment_id
        if run_id is None:
            run_id = self.client.create_run(experiment_id, start_time=mtime_ms(self.run.config),
                                            run_name=self.run.name, tags=tags).info.run_id
        if new_params:
            self.tag(run_id, tags, params)
        return experiment_id, run_id

    def fold(self, rec: Record, k: int, tags: dict, restarted: bool) -> str | None:
        if str(k) in rec.folds and not restarted:
            return None
        if str(k) in rec.folds:
            self.client.set_terminated(rec.folds[str(k)], "KILLED")
        return self.client.create_run(
            rec.experiment_id, start_time=mtime_ms(self.run.fold(k)), run_name=f"{self.run.name}.fold{k}",
            tags={"mlflow.parentRunId": rec.run_id, "fold": str(k), **tags}).info.run_id

    def batches(self, run_id: str, **items):
        for key, values in items.items():
            for i in range(0, len(values), 100):  # MLflow takes 100 params or tags a batch
                self.client.log_batch(run_id, **{key: values[i:i + 100]})

    def metrics(self, rec: Record, k: int | None, rows: list[dict]) -> int:
        """Fold k's epochs (the epoch a metric too), or for k None cv.json's figures at step 0; how many rows went.
        What the store holds already is not sent again (a kill after a send, before the ledger recorded it): an
        epoch whose 'epoch' metric it has (each epoch goes in one batch, which the store commits whole), a figure
        whose latest value it has."""
        from mlflow.entities import Metric

        run_id = rec.run_id if k is None else rec.folds[str(k)]
        stamp, extra = int(time.time() * 1000), {} if k is None else {"epoch": None}
        if k is None:
            held = self.client.get_run(run_id).data.metrics
            rows = [dict(row, metrics={key: v for key, v in row["metrics"].items() if held.get(key) != float(v)})
                    for row in rows]
            rows = [row for row in rows if row["metrics"]]
        else:
            held = {m.step for m in self.client.get_metric_history(run_id, "epoch")}
            rows = [row for row in rows if int(row["epoch"]) not in held]
        batch = []
        for row in rows:
            metrics = [Metric(key, float(row["epoch"] if key == "epoch" else value), stamp, int(row["epoch"]))
                       for key, value in (row["metrics"] | extra).items()]
            if len(batch) + len(metrics) > METRICS_PER_BATCH:
                self.client.log_batch(run_id, metrics=batch)
                batch = []
            batch += metrics
        if batch:
            self.client.log_batch(run_id, metrics=batch)
        return len(rows)

    def file(self, rec: Record, k: int | None, path: Path, artifact_dir: str | None, image: str | None):
        self.client.log_artifact(rec.run_id if k is None else rec.folds[str(k)], str(path), artifact_dir)

    def tags(self, rec: Record, tags: dict, params: dict | None = None):
        self.tag(rec.run_id, tags, params)

    def tag(self, run_id: str, tags: dict, params: dict | None):
        from mlflow.entities import Param, RunTag

        self.batches(run_id, params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                     tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def status(self, rec: Record, k: int | None, status: str, end_ms: int | None):
        run_id = rec.run_id if k is None else rec.folds[str(k)]
        if status == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        else:
            self.client.set_terminated(run_id, status, end_time=end_ms)

    def close(self, finished: bool):
        pass  # each run's state went with status()


class WandB:
    """A W&B run per fold (step = epoch: its metrics and confusion figure) and one for the whole run (cv.json's
    figures, the run's figures, a sweep trial's state and a submission's digest), grouped under the run's name; each
    opened when there is something to log, finished when its fold ends or this process closes its tracking."""

    lock = contextlib.nullcontext

    def __init__(self, rec: Record, run: RunDir):
        self.run, self.opened, self.config = run, {}, {}

    def session(self, rec: Record, k: int | None):
        """The W&B run of fold k (None: of the whole run), opened now (resuming the same id) where it is not."""
        if k not in self.opened:
            import wandb

            wid = rec.run_id if k is None else rec.folds[str(k)]
            self.opened[k] = wandb.init(
                project=rec.where, id=wid, group=self.run.name, job_type="fold" if k is not None else "run",
                name=self.run.name if k is None else f"{self.run.name}.fold{k}", dir=str(self.run.root),
                mode=wandb_mode(), resume="allow", config=self.config,
                settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, reinit="create_new"))
        return self.opened[k]

    @staticmethod
    def remote(rec: Record) -> bool:
        return wandb_mode() in ONLINE

    def begin(self, rec: Record, tags: dict, params: dict, new_params: bool) -> tuple[str | None, str]:
        self.config = params | tags  # each W&B run opened from now on carries the settings
        return None, rec.run_id or uuid.uuid4().hex[:12]  # the run opens when something is logged

    def fold(self, rec: Record, k: int, tags: dict, restarted: bool) -> str | None:
        if str(k) in rec.folds and not restarted:
            return None
        if str(k) in rec.folds:  # a fold restarted from scratch gets a new W&B run
            self.status(rec, k, "KILLED", None)
        return uuid.uuid4().hex[:12]

    def metrics(self, rec: Record, k: int | None, rows: list[dict]) -> int:
        """Fold k's epochs at step = epoch, or for k None cv.json's figures in the run's summary; how many rows went."""
        for row in rows:
            if k is None:
                self.session(rec, None).summary.update(row["metrics"])
            else:
                self.session(rec, k).log(row["metrics"], step=int(row["epoch"]))
        return len(rows)

    def file(self, rec: Record, k: int | None, path: Path, artifact_dir: str | None, image: str | None):
        if image is not None:  # W&B gets the figures; the files themselves stay in the run folder (and MLflow)
            import wandb

            self.session(rec, k).log({image: wandb.Image(str(path))})

    def tags(self, rec: Record, tags: dict, params: dict | None = None):
        self.session(rec, None).summary.update(tags)  # the params went as each run's config

    def status(self, rec: Record, k: int | None, status: str, end_ms: int | None):
        if status != "RUNNING" and k in self.opened:
            self.opened.pop(k).finish(exit_code=0 if status == "FINISHED" else 1)

    def close(self, finished: bool):
        for k in list(self.opened):
            self.opened.pop(k).finish(exit_code=0 if finished else 1)


BACKENDS: dict[str, Callable[[Record, RunDir], Tracker]] = {"mlflow": MLflow, "wandb": WandB}
