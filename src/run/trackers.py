"""The trackers behind src/run/tracking.py: MLflow (an embedded SQLite store, or a tracking server) and W&B (offline
unless WANDB_MODE says otherwise). Each package is imported only when its tracker is chosen.

tracking.py decides what a tracker lacks; a tracker here only knows how to send it, and keeps its ids in its target's
record `t` (a dict of tracking.json). MLflow: one run per maskcls run, a child run per fold (step = epoch). W&B: one run
per maskcls run, each fold's metrics under fold<k>/ against their own x-axis fold<k>/epoch, steps counted in `t`.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from src.errors import ConfigError, MaskclsError
from src.run.atomic import check_writable
from src.run.rundir import RunDir, mlflow_artifacts, store_lock

log = logging.getLogger("maskcls")

# mlflow is in requirements.txt; wandb is not (with it installed, `import timm` imports it, which slows every process
# that trains): whoever wants W&B installs it with this pin, and tests/test_run_tracking.py installs it into .cache/
PINS = {"mlflow": "mlflow==3.17.2", "wandb": "wandb==0.31.0"}
IN_REQUIREMENTS = {"mlflow"}
SQLITE, HTTP = "sqlite:///", ("http://", "https://")
# the MLflow client's HTTP defaults retry for minutes; a tracker must never hold training up that long (user env wins)
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")


@dataclass(frozen=True)
class Spec:
    """One destination: `tracker` mlflow at the store URI `where`, in `experiment`; or wandb in the project `where`."""
    tracker: str
    where: str
    experiment: str

    @property
    def key(self) -> str:
        return f"{self.tracker} {self.where}"

    def record(self) -> dict:
        return dict(tracker=self.tracker, where=self.where, experiment=self.experiment, epochs={}, files={},
                    status={})

    @classmethod
    def of(cls, t: dict) -> Spec:
        return cls(t["tracker"], t["where"], t["experiment"])


def require(tracker: str):
    """The tracker's package, imported now; missing, one line naming the install step."""
    try:
        return importlib.import_module(tracker)
    except ImportError as e:
        where = ("it is in requirements.txt" if tracker in IN_REQUIREMENTS else
                 "not in requirements.txt: an extra step, see docs/tracking.md")
        raise ConfigError(f"--tracker {tracker} needs the {tracker} package, which cannot be imported "
                          f"({first_line(e)}); install it with: pip install {PINS[tracker]}   ({where})") from None


def first_line(error: Exception) -> str:
    """An exception's message as one short line, for a message that must stay one line."""
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


# MLflow ----------------------------------------------------------------------------------------------------------

def sqlite_path(uri: str) -> Path:
    return Path(uri[len(SQLITE):])


def store_uri(uri: str, default_db: Path) -> str:
    """The MLflow store URI as tracking.json keeps it: the embedded default, a SQLite file with an absolute path, or
    a server's URL; any other form is one line."""
    if not uri:
        return SQLITE + str(Path(default_db).resolve())
    if uri.startswith(SQLITE):
        return SQLITE + str(sqlite_path(uri).resolve())
    if uri.startswith(HTTP):
        return uri.rstrip("/")
    raise ConfigError(f"--tracking_uri {uri}: use sqlite:///PATH (an embedded store, nothing to start) or "
                      f"http://HOST:PORT (an MLflow tracking server)")


def check_store(uri: str):
    """A SQLite store that can be written (or created), or a server that answers: else one line before any work."""
    if uri.startswith(SQLITE):
        db = sqlite_path(uri)
        cannot = f"--tracking_uri {uri}: the MLflow store cannot be written"
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
        return
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
            if answer.status != 200:
                raise OSError(f"HTTP {answer.status}")
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(f"--tracking_uri {uri}: no MLflow server answers there ({reason}); start it (mlflow server "
                          f"--host HOST --port PORT --backend-store-uri sqlite:///PATH) or leave --tracking_uri out "
                          f"for the embedded store") from None


@contextlib.contextmanager
def http_limits():
    """HTTP_LIMITS in the environment for the block, where the user has not set them."""
    added = {k: v for k, v in HTTP_LIMITS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def now_ms() -> int:
    return int(time.time() * 1000)


def batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class MLflow:
    """One MLflow store: the experiment, the run and one child run per fold of a maskcls run."""

    def __init__(self, spec: Spec, run: RunDir):
        self.spec, self.run = spec, run
        self._client = None

    def lock(self):
        """This machine's processes write a SQLite store one at a time; a server orders its own writes."""
        return store_lock(sqlite_path(self.spec.where)) if self.spec.where.startswith(SQLITE) else contextlib.nullcontext()

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            for name in ("mlflow", "alembic"):  # schema migrations and client notes are not the run's lines
                logging.getLogger(name).setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.spec.where)
        return self._client

    def where(self, t: dict) -> str:
        return f"MLflow {self.spec.where}, experiment {t['experiment']}, run {t.get('run_id', '(none yet)')}"

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client
        found = client.get_experiment_by_name(name)
        if found is None:
            location = (mlflow_artifacts(sqlite_path(self.spec.where)).resolve().as_uri()
                        if self.spec.where.startswith(SQLITE) else None)
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another process made it meanwhile
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise ConfigError(f"MLflow experiment {name} was deleted; restore it (mlflow experiments restore "
                              f"--experiment-id {found.experiment_id}) or give another --experiment")
        return found.experiment_id

    def open(self, t: dict, folder) -> bool:
        """The experiment and the run of this maskcls run, made where missing; True when made now."""
        if "experiment_id" not in t:
            t["experiment_id"] = self.experiment_id(t["experiment"])
        if "run_id" in t:
            return False
        made = self.client.create_run(t["experiment_id"], start_time=folder.started_ms, run_name=self.run.name,
                                      tags=self.run_tags(folder))
        t["run_id"] = made.info.run_id
        return True

    def child(self, t: dict, k: int, folder, again: bool = False) -> bool:
        """Fold k's child run, made where missing (again: the fold restarted, so the old child ends KILLED)."""
        children = t.setdefault("folds", {})
        if str(k) in children and not again:
            return False
        if str(k) in children:
            self.client.set_tag(children[str(k)], "superseded", "the fold restarted from scratch")
            self.client.set_terminated(children[str(k)], "KILLED")
        made = self.client.create_run(t["experiment_id"], start_time=folder.fold_started_ms(k),
                                      run_name=f"{self.run.name}.fold{k}",
                                      tags={"mlflow.parentRunId": t["run_id"], "fold": str(k), **self.run_tags(folder)})
        children[str(k)] = made.info.run_id
        return True

    @staticmethod
    def run_tags(folder) -> dict:
        """The run's tags, with the commit also under MLflow's own key (the UI's Source column)."""
        return {**folder.run_tags, "mlflow.source.git.commit": folder.run_tags["git_commit"]}

    def params(self, t: dict, params: dict, tags: dict):
        from mlflow.entities import Param, RunTag

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for part in batches(items, 100):
            self.client.log_batch(t["run_id"], params=part)
        self.client.log_batch(t["run_id"], tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def rows(self, t: dict, k: int, rows: list[dict]):
        """Each row's metrics at step = its epoch, with the epoch itself (what a crash mid-send is checked against)."""
        from mlflow.entities import Metric

        stamp = now_ms()
        metrics = [Metric(key, float(value), stamp, int(row["epoch"])) for row in rows
                   for key, value in [*row["metrics"].items(), ("epoch", row["epoch"])]]
        for part in batches(metrics, 1000):
            self.client.log_batch(t["folds"][str(k)], metrics=part)

    def last_epoch(self, t: dict, k: int) -> int | None:
        """The last epoch of fold k the store holds (after a crash while sending), -1 for none."""
        history = self.client.get_metric_history(t["folds"][str(k)], "epoch")
        return max((m.step for m in history), default=-1)

    def cv(self, t: dict, values: dict, step: int):
        from mlflow.entities import Metric

        stamp = now_ms()
        self.client.log_batch(t["run_id"], metrics=[Metric(k, float(v), stamp, step) for k, v in values.items()])

    def file(self, t: dict, k: int | None, path: Path, folder: str | None, image: str | None):
        self.client.log_artifact(t["run_id"] if k is None else t["folds"][str(k)], str(path), folder)

    def tags(self, t: dict, tags: dict):
        from mlflow.entities import RunTag

        self.client.log_batch(t["run_id"], tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def status(self, t: dict, k: int | None, status: str, end_ms: int | None):
        run_id = t["run_id"] if k is None else t["folds"][str(k)]
        if status == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        else:
            self.client.set_terminated(run_id, status, end_time=end_ms)

    def close(self, t: dict, finished: bool):
        pass


# W&B --------------------------------------------------------------------------------------------------------------

def wandb_mode() -> str:
    """W&B's mode: the user's WANDB_MODE, else offline (competition servers often are)."""
    return os.environ.get("WANDB_MODE", "").strip().lower() or "offline"


def check_wandb():
    mode = wandb_mode()
    if mode not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode} is not a W&B mode; use one of: {', '.join(WANDB_MODES)} (unset: offline)")
    if mode in ("online", "run", "shared") and not (os.environ.get("WANDB_API_KEY") or has_netrc_key()):
        raise ConfigError(f"WANDB_MODE={mode}, but W&B finds no API key here: run wandb login or set WANDB_API_KEY, "
                          f"or unset WANDB_MODE to log offline and wandb sync later")


def has_netrc_key() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or bool(os.environ.get("WANDB_BASE_URL"))
    except OSError:
        return False


class WandB:
    """One W&B run per maskcls run, opened only when there is something to log, by one process at a time (the run's
    W&B lock): another process finds it busy and leaves the sending to the holder or to a later sync."""

    def __init__(self, spec: Spec, run: RunDir):
        self.spec, self.run = spec, run
        self._wb = None
        self._held = contextlib.ExitStack()
        self._defined: set[int] = set()
        self._folder = None  # what open() was given: the run's params and tags for a W&B run opened later

    def lock(self):
        return contextlib.nullcontext()

    def where(self, t: dict) -> str:
        return f"W&B project {self.spec.where}, run {t.get('id', '(none yet)')} ({wandb_mode()})"

    def session(self, t: dict):
        """The open W&B run; opened now (resuming the same id) if it is not. RunBusy while another process holds it."""
        if self._wb is not None:
            return self._wb
        self._held.enter_context(self.run.wandb_lock())
        try:
            import wandb

            t.setdefault("id", uuid.uuid4().hex[:12])
            mode = wandb_mode()
            self._wb = wandb.init(project=self.spec.where, id=t["id"], name=self.run.name, dir=str(self.run.root),
                                  mode=mode, resume="allow", config=self._folder.params | self._folder.run_tags,
                                  job_type="train",
                                  settings=wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                                          reinit="create_new"))
        except BaseException:
            self._held.close()
            raise
        self._defined.clear()
        if mode == "disabled":  # WANDB_MODE=disabled: W&B takes the calls and keeps nothing
            return self._wb
        session = Path(self._wb.dir).parent
        t.setdefault("sessions", []).append(str(session.relative_to(self.run.root)) if session.is_relative_to(
            self.run.root) else str(session))
        if mode in ("offline", "dryrun"):
            log.info("W&B offline (WANDB_MODE %s): %s; upload it with: wandb sync %s", "unset" if not
                     os.environ.get("WANDB_MODE") else mode, session, self.run.wandb / "offline-run-*")
        return self._wb

    def open(self, t: dict, folder) -> bool:
        self._folder = folder
        return False  # nothing to make before there is something to log

    def child(self, t: dict, k: int, folder, again: bool = False) -> bool:
        return False

    def params(self, t: dict, params: dict, tags: dict):
        if self._wb is not None:
            self._wb.config.update(params | tags, allow_val_change=True)

    def next_step(self, t: dict) -> int:
        t["step"] = t.get("step", -1) + 1
        return t["step"]

    def rows(self, t: dict, k: int, rows: list[dict]):
        wb = self.session(t)
        self.define(k)
        for row in rows:
            values = {f"fold{k}/{key}": value for key, value in row["metrics"].items()}
            wb.log({**values, f"fold{k}/epoch": row["epoch"]}, step=self.next_step(t))

    def define(self, k: int):
        if k not in self._defined:
            self._wb.define_metric(f"fold{k}/epoch")
            self._wb.define_metric(f"fold{k}/*", step_metric=f"fold{k}/epoch")
            self._defined.add(k)

    def last_epoch(self, t: dict, k: int) -> int | None:
        return None  # an offline run cannot be asked: the rows are logged again, and W&B keeps one per step

    def cv(self, t: dict, values: dict, step: int):
        self.session(t).summary.update(values)

    def file(self, t: dict, k: int | None, path: Path, folder: str | None, image: str | None):
        if image is None:
            return  # W&B gets the figures; the files themselves stay in the run folder and MLflow
        import wandb

        wb = self.session(t)
        wb.log({image: wandb.Image(str(path))}, step=self.next_step(t))

    def tags(self, t: dict, tags: dict):
        pass  # sweep state and submission digests: MLflow's; a W&B run is not reopened for them

    def status(self, t: dict, k: int | None, status: str, end_ms: int | None):
        pass  # the W&B run's state comes from finish()

    def close(self, t: dict, finished: bool):
        try:
            if self._wb is not None:
                self._wb.finish(exit_code=0 if finished else 1)
        finally:
            self._wb = None
            self._held.close()


def backend(spec: Spec, run: RunDir):
    return {"mlflow": MLflow, "wandb": WandB}[spec.tracker](spec, run)
