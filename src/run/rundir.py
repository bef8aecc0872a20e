"""The run folder: every path of a run, the checkpoint kinds, and the one rule for claiming a name.

Nothing else spells a file name of a run. Layout (docs/run-folder.md):

    <log_dir>/<name>/config.yaml  folds.csv  train.log  metrics.csv  cv.json  decision.json  people.npz  tb/
                     confusion.png   (the confusion matrix of every fold's out-of-fold rows, with cv.json)
                     pseudo_labels.csv (+ .yaml)   soft_targets.csv (+ .json: the teachers it came from; --teacher)
                     fold<k>/last.pt  best_f1.pt  best_loss.pt  best_acc.pt  oof.csv  confusion.png  metrics.csv
                     (a --fold full run: fold0/ holds its one model, trained on every person: last.pt and metrics.csv)
    <log_dir>/.<name>.lock   the run's lock (creation, run-level files); .<name>.fold<k>.lock: fold k's trainer;
                     .<name>.readers.lock: held shared by every process reading the run, against --overwrite
                     submission.csv  eval_probs.csv  eval_preview.png  inference.yaml   (written by infer)
                     onnx/<checkpoint>.<tta>.<key>.onnx (+ .sha256)   the exported graph of --engine onnxruntime (its cache)
                     errors.png   (tools.report)   label_issues.csv  label_issues.png   (tools.find_label_issues)
                     sweep.json   (a trial of sweep.py: study, trial, parameters, state)
                     tracking.json   where the run is tracked (--tracker): tracker run ids, what was sent, what failed
                     wandb/offline-run-*   the W&B runs of --tracker wandb (offline unless WANDB_MODE says otherwise)
    <log_dir>/.<name>.track.lock   held while a process sends the run to its trackers
    <log_dir>/report.html   the comparison of runs (python -m tools.report)
    <log_dir>/sweeps.db     the sweeps' embedded Optuna storage (sweep.py without --storage)
    <log_dir>/mlflow.db  mlartifacts/   the embedded MLflow store of --tracker mlflow and its files; .mlflow.db.lock
    <log_dir>/cache/        decoded images (cache ram or disk) and face boxes (crop face), shared by the runs

    python -m src.run.rundir latest [LOG_DIR]     prints the most recently written run's name (for shell scripts)
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path

from src.config.schema import CHECKPOINT_KINDS, RESERVED_NAMES, RUN_NAME, RUN_NAME_TEXT
from src.errors import ConfigError, RunBusy, RunExists, filesystem_error
from src.run.atomic import remove_stale_tmp
from src.files import real

CONFIG, FOLDS, TRAIN_LOG, METRICS, CV, TENSORBOARD = ("config.yaml", "folds.csv", "train.log", "metrics.csv",
                                                     "cv.json", "tb")
DECISION = "decision.json"
PEOPLE = "people.npz"  # the person metric and the out-of-fold rows' places under it (src/people.py)
SWEEP = "sweep.json"  # a sweep trial's study, trial number, parameters and state (running, pruned, complete)
TRACKING, WANDB = "tracking.json", "wandb"  # where the run is tracked and what was sent; W&B's own run folders
MLFLOW_DB, MLFLOW_ARTIFACTS = "mlflow.db", "mlartifacts"  # the embedded MLflow store in log_dir, its files beside it
PSEUDO_LABELS, PSEUDO_SETTINGS = "pseudo_labels.csv", "pseudo_labels.yaml"
SOFT_TARGETS, SOFT_SOURCE = "soft_targets.csv", "soft_targets.json"  # a student's teacher probabilities, their teachers
OOF, CONFUSION = "oof.csv", "confusion.png"
ONNX_EXPORTS = "onnx"
ERRORS, LABEL_ISSUES, LABEL_ISSUES_GALLERY, REPORT = "errors.png", "label_issues.csv", "label_issues.png", "report.html"
SUBMISSION, EVAL_PROBS, EVAL_PREVIEW, INFERENCE_SETTINGS = ("submission.csv", "eval_probs.csv", "eval_preview.png",
                                                            "inference.yaml")
PREDICTION_NAMES = (SUBMISSION, EVAL_PROBS, EVAL_PREVIEW, INFERENCE_SETTINGS)
RUN_FILES = (CONFIG, FOLDS, TRAIN_LOG, METRICS, CV, DECISION, PEOPLE, SWEEP, TENSORBOARD, PSEUDO_LABELS,
             PSEUDO_SETTINGS, SOFT_TARGETS, SOFT_SOURCE, ERRORS, LABEL_ISSUES, LABEL_ISSUES_GALLERY, SUBMISSION, EVAL_PROBS, EVAL_PREVIEW, INFERENCE_SETTINGS, ONNX_EXPORTS, TRACKING, WANDB)



def name_problem(name: str) -> str | None:
    """Why `name` cannot be a run folder's name, or None."""
    if name in RESERVED_NAMES:
        return f"run name {name!r} is reserved for log_dir/{name}; choose another --name"
    return None if RUN_NAME.fullmatch(name) else f"run name {name!r} is not allowed: use {RUN_NAME_TEXT}"


LONGEST_SUFFIX = ".fold999.lock"  # the longest name derived from a run's: its fold locks, .<name>.fold<k>.lock


def name_max(folder: Path) -> int:
    """The file system's longest file name at folder (or its nearest existing parent)."""
    for place in (folder, *folder.parents):
        if place.exists():
            try:
                return os.pathconf(place, "PC_NAME_MAX")
            except (OSError, ValueError):
                break
    return 255


def length_problem(log_dir: Path, name: str) -> str | None:
    limit = name_max(log_dir)
    longest = len(f".{name}{LONGEST_SUFFIX}".encode())
    if longest > limit:
        return (f"run name {name[:24]}... is {len(name.encode())} bytes long: its lock files would pass this file "
                f"system's {limit}-byte limit on file names; use at most {limit - len(LONGEST_SUFFIX) - 1} bytes")
    return None


def holder(lock_file: Path) -> str:
    try:
        return f"process {lock_file.read_text().strip() or '?'}"
    except OSError:
        return "another process"


def is_held(lock_file: Path) -> bool:
    """Whether another process holds lock_file now. Only for processes that hold no lock on it themselves:
    closing this probe's descriptor would drop the caller's own record locks on the file."""
    if not lock_file.is_file():
        return False
    with open(lock_file) as f:  # a shared probe needs no write access: it works on a read-only disk too
        try:
            fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def exclusive(lock_file: Path, wait: bool, busy: str, held_by=holder):
    """A POSIX record lock (fcntl.lockf) on lock_file, held for the block; the file records the holder's pid.
    Record locks belong to the process: forked loader workers do not inherit them, and a killed trainer's lock
    is gone at once. Without `wait`, a held lock raises RunBusy naming its holder (`held_by(lock_file)`)."""
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_file, "a+")
    except OSError as e:
        raise filesystem_error(e, lock_file, "create the lock file") from None
    with f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            raise RunBusy(f"{busy} is held by {held_by(lock_file)} ({lock_file}); wait for it or stop it") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared(lock_file: Path):
    """A shared POSIX record lock on lock_file for the block: any number of holders, and exclusive() is refused
    while one holds it. Where the lock file cannot be made (a read-only log_dir) nothing can replace the run
    either, so the block runs without it."""
    try:
        f = open(lock_file, "a+")
    except OSError:
        try:
            f = open(lock_file)
        except OSError:
            yield
            return
    with f:
        fcntl.lockf(f, fcntl.LOCK_SH)  # waits only while --overwrite replaces the run (a moment)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


class RunDir:
    """Paths of the run `name` under `log_dir`; `name` must be one safe folder name."""

    def __init__(self, log_dir, name: str):
        problem = name_problem(name) or length_problem(Path(log_dir), name)
        if problem:
            raise ConfigError(problem)
        self.log_dir, self.name = Path(log_dir), name
        self.root = self.log_dir / name

    def __repr__(self):
        return f"RunDir({str(self.root)!r})"

    config = property(lambda self: self.root / CONFIG)
    folds_csv = property(lambda self: self.root / FOLDS)
    train_log = property(lambda self: self.root / TRAIN_LOG)
    metrics = property(lambda self: self.root / METRICS)
    cv = property(lambda self: self.root / CV)
    decision = property(lambda self: self.root / DECISION)
    people = property(lambda self: self.root / PEOPLE)
    sweep = property(lambda self: self.root / SWEEP)
    tensorboard = property(lambda self: self.root / TENSORBOARD)
    pseudo_labels = property(lambda self: self.root / PSEUDO_LABELS)
    pseudo_settings = property(lambda self: self.root / PSEUDO_SETTINGS)
    soft_targets = property(lambda self: self.root / SOFT_TARGETS)
    soft_source = property(lambda self: self.root / SOFT_SOURCE)
    submission = property(lambda self: self.root / SUBMISSION)
    errors = property(lambda self: self.root / ERRORS)
    oof_confusion = property(lambda self: self.root / CONFUSION)
    label_issues = property(lambda self: self.root / LABEL_ISSUES)
    label_issues_gallery = property(lambda self: self.root / LABEL_ISSUES_GALLERY)
    tracking = property(lambda self: self.root / TRACKING)
    wandb = property(lambda self: self.root / WANDB)

    def fold(self, k: int) -> Path:
        return self.root / f"fold{k}"

    def checkpoint(self, k: int, kind: str) -> Path:
        if kind not in CHECKPOINT_KINDS:
            raise ConfigError(f"checkpoint kind {kind!r}; choose one of: {', '.join(CHECKPOINT_KINDS)}")
        return self.fold(k) / f"{kind}.pt"

    def last(self, k: int) -> Path:
        return self.checkpoint(k, "last")

    def oof(self, k: int) -> Path:
        return self.fold(k) / OOF

    def confusion(self, k: int) -> Path:
        return self.fold(k) / CONFUSION

    def fold_metrics(self, k: int) -> Path:
        return self.fold(k) / METRICS

    def onnx_export(self, checkpoint: str, tta: str, key: str) -> Path:
        """The graph of every finished fold's `checkpoint` with `tta`, exported for onnxruntime; `key` digests
        what it was made from."""
        if checkpoint not in CHECKPOINT_KINDS:
            raise ConfigError(f"checkpoint kind {checkpoint!r}; choose one of: {', '.join(CHECKPOINT_KINDS)}")
        return self.root / ONNX_EXPORTS / f"{checkpoint}.{tta}.{key}.onnx"

    @staticmethod
    def onnx_digest(export: Path) -> Path:
        """The sha256 of an exported graph, written with it: a graph changed since is never used."""
        return export.with_name(f"{export.name}.sha256")

    def onnx_exports(self, checkpoint: str, tta: str) -> list[Path]:
        return sorted((self.root / ONNX_EXPORTS).glob(f"{checkpoint}.{tta}.*.onnx"))

    def lock(self):
        """The run's lock: creating the run and rebuilding its run-level files happen under it."""
        return exclusive(self.log_dir / f".{self.name}.lock", wait=True, busy=f"run {self.name}")

    def fold_lock(self, k: int):
        """Held while fold k trains: a second trainer of the same fold is refused at once. It lives beside the
        run folder, so --overwrite can see a trainer at work before it deletes anything."""
        return exclusive(self.fold_lock_file(k), wait=False, busy=f"fold {k} of run {self.name}")

    def fold_lock_file(self, k: int) -> Path:
        return self.log_dir / f".{self.name}.fold{k}.lock"

    def readers_lock_file(self) -> Path:
        return self.log_dir / f".{self.name}.readers.lock"

    def track_lock(self):
        """Held while a process sends the run to its trackers and updates tracking.json: processes training folds side
        by side, and tools.track, send each record once."""
        return exclusive(self.log_dir / f".{self.name}.track.lock", wait=True, busy=f"tracking of run {self.name}")

    def reading(self):
        """Held while a process reads the run and writes into it (infer, predict, export, pseudo labels, report):
        --overwrite is refused until every reader has finished, so no reader mixes two runs."""
        return shared(self.readers_lock_file())

    def training_folds(self, n_folds: int) -> list[int]:
        """Folds whose lock a live trainer holds now (a killed trainer's lock is gone at once)."""
        return [k for k in range(n_folds) if is_held(self.fold_lock_file(k))]

    def folds(self) -> list[int]:
        """Indices of the fold folders present, in order."""
        found = [p.name[4:] for p in self.root.glob("fold*") if p.is_dir()]
        return sorted(int(k) for k in found if k.isdigit())

    @property
    def exists(self) -> bool:
        """A run is a folder holding config.yaml."""
        return self.config.is_file()

    def claim(self, resume: bool, overwrite: bool, prepare=None) -> str:
        """The one rule for a run name, under the run's lock: 'new' when free; an existing run is continued with
        resume ('resumed'), replaced with overwrite ('replaced'), and refused otherwise. Overwrite deletes only a
        real folder directly inside log_dir that holds config.yaml. Temp files of killed writers go.
        `prepare(how)`, still under the lock, checks or writes what the run folder must hold. A name taken by
        anything but a run folder is refused before any lock file is made."""
        self.refuse_foreign()
        with self.lock():
            how = self._claim(resume, overwrite)
            if prepare is not None:
                prepare(how)
        return how

    def refuse_foreign(self):
        """A path of this name that is not a run folder (a file, a link to one, a folder of other files)."""
        if not (self.root.exists() or self.root.is_symlink()) or self.exists:
            return
        if not self.root.is_dir():
            raise RunExists(f"{self.root} exists and is not a run folder; choose another --name")
        foreign = [p.name for p in self.root.iterdir() if p.name not in RUN_FILES and not p.name.startswith("fold")
                   and not p.name.endswith(".tmp")]
        if foreign:
            raise RunExists(f"{self.root} is a folder of other files (e.g. {foreign[0]}), not a run; choose another "
                            f"--name")

    def _claim(self, resume: bool, overwrite: bool) -> str:
        if self.exists:
            if overwrite:
                if self.root.is_symlink() or real(self.root).parent != real(self.log_dir):
                    raise RunExists(f"{self.root} is not a run folder directly inside {self.log_dir}; not deleted")
                for k in self.folds():
                    with self.fold_lock(k):  # refused while a trainer holds it
                        pass
                with exclusive(self.readers_lock_file(), wait=False, busy=f"run {self.name} cannot be replaced: it",
                               held_by=lambda _: "a reader (infer, predict, export, pseudo labels or a report)"):
                    shutil.rmtree(self.root)
                    self.root.mkdir(parents=True)
                return "replaced"
            if not resume:
                raise RunExists(f"{self.root} already exists; use --resume to continue it or --overwrite to "
                                f"replace it")
            for folder in [self.root, *(self.fold(k) for k in self.folds())]:
                remove_stale_tmp(folder)
            return "resumed"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise filesystem_error(e, self.root, "create the run folder") from None
        return "new"

def prediction_files(submission: Path) -> dict[str, Path]:
    """What infer writes: the submission and, beside it, probabilities, a preview and the settings used. A run's
    own submission.csv has eval_probs.csv, eval_preview.png and inference.yaml; any other X.csv has X.probs.csv,
    X.preview.png and X.yaml, so outputs of different names never replace each other."""
    submission = Path(submission)
    if submission.name == SUBMISSION:
        folder = submission.parent
        return dict(submission=submission, probs=folder / EVAL_PROBS, preview=folder / EVAL_PREVIEW,
                    settings=folder / INFERENCE_SETTINGS)
    stem = submission.with_suffix("") if submission.suffix == ".csv" else submission
    return dict(submission=submission, probs=stem.with_name(f"{stem.name}.probs.csv"),
                preview=stem.with_name(f"{stem.name}.preview.png"), settings=stem.with_name(f"{stem.name}.yaml"))


def cache_dir(log_dir) -> Path:
    """Where decoded images and face boxes are cached for every run of log_dir (its name is reserved)."""
    return Path(log_dir) / "cache"


def mlflow_db(log_dir) -> Path:
    """The embedded MLflow store of --tracker mlflow without --tracking_uri."""
    return Path(log_dir) / MLFLOW_DB


def mlflow_artifacts(db: Path) -> Path:
    """Where runs of the SQLite store `db` keep their files (MLflow's default would follow the working folder)."""
    return Path(db).parent / MLFLOW_ARTIFACTS


def store_lock(db: Path):
    """Held while this machine's processes write into the SQLite store `db`: one writer at a time, so none meets a
    locked database."""
    db = Path(db)
    return exclusive(db.with_name(f".{db.name}.lock"), wait=True, busy=f"the MLflow store {db}")


def report_file(log_dir) -> Path:
    """The default place of tools/report.py's comparison of the runs in log_dir."""
    return Path(log_dir) / REPORT


def list_runs(log_dir) -> list[RunDir]:
    """The runs in log_dir (folders holding config.yaml whose names are run names), oldest config first."""
    configs = sorted(Path(log_dir).glob(f"*/{CONFIG}"), key=lambda p: p.stat().st_mtime)
    return [RunDir(log_dir, c.parent.name) for c in configs if name_problem(c.parent.name) is None]


def latest(log_dir) -> str | None:
    """The run whose config.yaml was written last, or None."""
    runs = list_runs(log_dir)
    return runs[-1].name if runs else None


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[1] != "latest":
        raise SystemExit(__doc__)
    name = latest(sys.argv[2] if len(sys.argv) == 3 else "logs")
    if name is None:
        raise SystemExit("error: no run found; set RUN=name")
    print(name)
