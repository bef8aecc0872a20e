"""src/run/tracking.py (and trackers.py, tools/track.py): MLflow on an embedded SQLite store and on a real `mlflow
server`, W&B offline, folds side by side, kill -9 and --resume, replay of an untracked run, a server killed mid-run,
infer and export outputs, a sweep trial's tags, and every fault as one line before the run folder exists.

Kept cheap: only what live training alone does trains here (folds side by side, a kill and --resume, a server lost
mid-run; one epoch where that shows it). Everything else sends a copy of the session's trained run with tools.track,
the same sending that live training does."""
import ast
import fcntl
import hashlib
import importlib.metadata
import inspect
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

import export
import infer
import train
from src.engine import trainer
from src.run.rundir import RunDir
from src.run.trackers import PINS
from src.run.checkpoint import saved_epoch
from tests.helpers import ROOT, TINY, cli, one_line, read_only, tiny_cfg
from tools import track

MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner process: the test needs none


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its tables made: tests copy it rather than each paying the schema migrations."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def store_in(log_dir: Path, empty_store: Path) -> str:
    log_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(empty_store, log_dir / "mlflow.db")
    return f"sqlite:///{log_dir / 'mlflow.db'}"


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def runs_of(uri: str, experiment: str) -> tuple:
    """(the maskcls run, {fold: child run}) of the one run in `experiment`."""
    c = client(uri)
    found = c.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} in {uri}"
    runs = c.search_runs([found.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = {int(r.data.tags["fold"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") ==
                parents[0].info.run_id}
    assert len(runs) == 1 + len(children)
    return parents[0], children


def steps(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


def assert_run_in_mlflow(uri: str, experiment: str, run: RunDir, folds: int):
    """The run, a child per fold with each saved epoch's metrics exactly once (step = epoch, values of metrics.csv),
    the cv.json figures, the confusion figures, the params and the git tags."""
    parent, children = runs_of(uri, experiment)
    assert sorted(children) == list(range(folds))
    metrics = pd.read_csv(run.metrics)
    for k, child in children.items():
        rows = metrics[metrics["fold"] == k].sort_values("epoch")
        for key in ("val_f1", "train_loss", "lr", "epoch"):
            got = steps(uri, child.info.run_id, key)
            assert [s for s, _ in got] == rows["epoch"].tolist(), (k, key, got)  # every epoch, none twice
            assert [v for _, v in got] == pytest.approx(rows[key].tolist(), rel=1e-6), (k, key)
        assert child.info.status == "FINISHED"
        assert "confusion.png" in [a.path for a in client(uri).list_artifacts(child.info.run_id)]
    cv = json.loads(run.cv.read_text())
    assert parent.data.metrics["cv_f1"] == pytest.approx(cv["cv_f1"])
    assert parent.data.metrics["cv_f1_tuned"] == pytest.approx(cv["cv_f1_tuned"])
    assert parent.info.status == "FINISHED" and parent.info.run_name == run.name
    artifacts = [a.path for a in client(uri).list_artifacts(parent.info.run_id)]
    assert {"confusion.png", "config.yaml", "cv.json", "decision.json"} <= set(artifacts), artifacts
    saved = __import__("yaml").safe_load(run.config.read_text())
    assert parent.data.params["model"] == saved["model"] and parent.data.params["lr"] == str(saved["lr"])
    assert parent.data.tags["git_commit"] == saved["git_commit"] == parent.data.tags["mlflow.source.git.commit"]
    return parent, children


def ids(run: RunDir) -> dict:
    (t,) = [t for t in json.loads(run.tracking.read_text())["targets"].values() if t["tracker"] == "mlflow"]
    return dict(run=t.get("run_id"), folds=t.get("folds"))


@pytest.mark.slow
def test_folds_side_by_side_killed_and_resumed_log_every_epoch_once_into_the_same_runs(dataset, tmp_path,
                                                                                       empty_store, capsys):
    """Fold 0 trains in another process while this one trains fold 1, both logging into one SQLite store; fold 0's
    process is killed (kill -9) after its epoch 1 is saved, then resumed: the same MLflow runs, no step twice. The
    finished two-fold run is then what MlflowClient finds: a child per fold with each epoch's metrics, cv.json's
    figures, the confusion figures and the params (assert_run_in_mlflow)."""
    logs = tmp_path / "logs"
    uri = store_in(logs, empty_store)
    args = ["--data_dir", dataset, "--log_dir", logs, "--name", "sbs", *TINY, "--tracker", "mlflow", "--resume"]
    run = RunDir(logs, "sbs")
    first = subprocess.Popen([sys.executable, "train.py", *map(str, args), "--fold", "0", "--epochs", "3"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "fold0.log", "w"),
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    lock = run.fold_lock_file(0)
    deadline = time.time() + 300
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, (tmp_path / "fold0.log").read_text()[-3000:]

    def kill_after_epoch_1():
        while first.poll() is None and saved_epoch(run.last(0))[0] < 1:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_after_epoch_1)
    killer.start()
    try:
        assert cli(train.main, *args, "--fold", "1", capsys=capsys)[0] == 0  # side by side with fold 0
    finally:
        killer.join(timeout=300)
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert saved_epoch(run.last(0)) == (1, False), "the kill should land in fold 0's epoch 2"
    before = ids(run)
    assert before["run"] and sorted(before["folds"]) == ["0", "1"]

    code, err = cli(train.main, *args, "--fold", "0", "--epochs", "3", capsys=capsys)
    assert code == 0 and "warning" not in err.lower()
    assert ids(run) == before  # the same runs continue
    assert_run_in_mlflow(uri, "logs", run, folds=2)
    assert steps(uri, before["folds"]["0"], "val_f1")[-1][0] == 2  # fold 0's three epochs, fold 1's two
    state = json.loads(run.tracking.read_text())["targets"]
    assert [t["epochs"] for t in state.values()] == [{"0": 2, "1": 1}] and "failed" not in json.dumps(state)


@pytest.mark.slow
def test_live_tracking_sends_each_epoch_as_soon_as_its_last_pt_is_written(dataset, tmp_path, empty_store, monkeypatch):
    """Each epoch's files are written on the writer thread, last.pt last, then the records are told: the ledger then
    holds that very epoch, not the one before."""
    from src.run.records import RunRecords

    logs = tmp_path / "logs"
    store_in(logs, empty_store)
    seen, real = [], RunRecords.epoch_saved

    def epoch_saved(self, row, cm):
        real(self, row, cm)
        (target,) = json.loads(self.run.tracking.read_text())["targets"].values()
        seen.append((row["fold"], row["epoch"], target["epochs"].get(str(row["fold"]))))

    monkeypatch.setattr(RunRecords, "epoch_saved", epoch_saved)
    trainer.train(tiny_cfg(data_dir=dataset, log_dir=logs, name="live", fold=0, epochs=3, tracker="mlflow"))
    assert seen == [(0, 0, 0), (0, 1, 1), (0, 2, 2)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    """`mlflow server` on loopback with a SQLite backend, as a team would start it; returns once it answers."""
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(artifacts),
                             "--workers", "1"], cwd=db.parent, stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            env={**os.environ, **MLFLOW_SERVER_ENV}, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise AssertionError(f"mlflow server did not answer within 180 s: {log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the server and its uvicorn worker
    proc.wait(timeout=60)


@pytest.mark.slow
def test_a_tracking_server_takes_the_live_run_and_losing_it_mid_run_costs_one_warning_and_the_replay_fills_the_gap(
        dataset, tmp_path, empty_store, capsys):
    """A real `mlflow server` (loopback, SQLite backend) gets fold 0 live; it is killed once fold 1's epoch is saved:
    one warning, the run finishes, and tools.track sends the rest into the same runs once the server is back."""
    served = tmp_path / "server"
    served.mkdir()
    shutil.copy(empty_store, served / "backend.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    run = RunDir(logs, "srv")
    server = start_server(served / "backend.db", served / "artifacts", port, tmp_path / "server.log")
    try:
        live = {}

        def kill_server(k, epoch, metrics, last):
            if (k, epoch) == (1, 0):  # fold 0 has ended: what the server holds of it came live
                (target,) = json.loads(run.tracking.read_text())["targets"].values()
                live.update(target=target, val_f1=steps(url, target["folds"]["0"], "val_f1"))
                stop_server(server)

        cfg = tiny_cfg(data_dir=dataset, log_dir=logs, name="srv", epochs=1, tracker="mlflow", tracking_uri=url,
                       experiment="team")
        cv = trainer.train(cfg, kill_server)
        assert server.poll() is not None and cv["cv_f1_tuned"] >= 0  # the run finished without its server
        sent = live["target"]
        assert sent["epochs"] == {"0": 0} and sent["status"]["0"] == "FINISHED" and "failed" not in sent
        assert "fold0/confusion.png" in sent["files"] and [step for step, _ in live["val_f1"]] == [0]
        warnings = [line for line in run.train_log.read_text().splitlines() if " WARNING " in line]
        assert len(warnings) == 1 and f"tracker mlflow ({url}) failed" in warnings[0], warnings
        assert "python -m tools.track --run srv" in warnings[0]
        (target,) = json.loads(run.tracking.read_text())["targets"].values()
        assert target["failed"] and "1" not in target["epochs"]  # what was not sent is on record

        server = start_server(served / "backend.db", served / "artifacts", port, tmp_path / "server.log")
        code, err = cli(track.main, "--run", "srv", "--log_dir", logs, capsys=capsys)
        assert code == 0, err
        assert_run_in_mlflow(url, "team", run, folds=2)
        (after,) = json.loads(run.tracking.read_text())["targets"].values()
        assert "failed" not in after and after["epochs"] == {"0": 0, "1": 0}
        # the same runs, filled: the live run and every child made before the server went
        assert after["run_id"] == sent["run_id"] == target["run_id"] and after["folds"]["0"] == sent["folds"]["0"]
        assert after["folds"].items() >= target["folds"].items()
    finally:
        stop_server(server)


def test_replay_of_an_untracked_run_sends_it_once_and_infer_and_export_add_their_outputs(own_run, dataset, tmp_path,
                                                                                          empty_store, capsys):
    """tools.track on a run trained with --tracker none: the run, a child per fold, every epoch, cv.json, the figures
    and params; a second call changes nothing. Then infer and export, without --tracker, add their outputs to it."""
    logs, name = own_run
    run = RunDir(logs, name)
    uri = store_in(logs, empty_store)
    assert not run.tracking.exists()
    assert track.main(["--run", name, "--log_dir", str(logs), "--tracker", "mlflow"]) == 0
    # 2 folds x 2 epochs; config.yaml, cv.json, decision.json, the out-of-fold confusion.png and each fold's; the run
    # and 2 folds
    assert ": 1 cv, 4 epochs, 6 files, 3 runs" in capsys.readouterr().out
    parent, children = assert_run_in_mlflow(uri, logs.name, run, folds=2)
    before = run.tracking.read_bytes()
    history = {k: steps(uri, c.info.run_id, "val_f1") for k, c in children.items()}

    assert track.main(["--run", name, "--log_dir", str(logs)]) == 0  # the trackers tracking.json names
    assert capsys.readouterr().out.strip().endswith(": nothing new to send")
    assert run.tracking.read_bytes() == before
    again, again_children = runs_of(uri, logs.name)
    assert again.info.run_id == parent.info.run_id and {k: c.info.run_id for k, c in again_children.items()} == {
        k: c.info.run_id for k, c in children.items()}
    assert {k: steps(uri, c.info.run_id, "val_f1") for k, c in again_children.items()} == history
    assert len(steps(uri, parent.info.run_id, "cv_f1")) == 1

    # no --tracker: the run was tracked, so its MLflow run gets the outputs
    assert cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, "--engine", "torch",
               "--tta", "none", capsys=capsys)[0] == 0
    out = tmp_path / "exported"
    assert cli(export.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, "--out", out,
               "--parity_images", "4", "--tta", "none", capsys=capsys)[0] == 0
    parent, _ = runs_of(uri, logs.name)
    assert parent.data.tags["submission_sha256"] == hashlib.sha256(run.submission.read_bytes()).hexdigest()
    c = client(uri)
    assert [a.path for a in c.list_artifacts(parent.info.run_id, "inference")] == ["inference/inference.yaml"]
    assert sorted(a.path for a in c.list_artifacts(parent.info.run_id, "export")) == ["export/model.json",
                                                                                     "export/model.onnx"]
    onnx = Path(c.download_artifacts(parent.info.run_id, "export/model.onnx", str(tmp_path)))
    assert onnx.read_bytes() == (out / "model.onnx").read_bytes()


WANDB_PIN = PINS["wandb"]  # not in requirements.txt: installed for this test only, once, into .cache/
WANDB_TARGET = ROOT / ".cache" / WANDB_PIN.replace("==", "-")


def wandb_folder() -> Path:
    """A folder holding the pinned wandb for PYTHONPATH, installed once per clone with pip --target (git ignores
    .cache/). pytest-xdist workers that get here together wait on a file lock, and the stamp, written last, marks a
    whole install. Whatever wandb shares with this environment is pinned to this environment's versions, so the copies
    that pip --target adds beside wandb (and that come first on PYTHONPATH) are the same code."""
    stamp = WANDB_TARGET / "installed.txt"
    WANDB_TARGET.parent.mkdir(exist_ok=True)
    with open(WANDB_TARGET.with_name(f".{WANDB_TARGET.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == WANDB_PIN:
            return WANDB_TARGET
        shutil.rmtree(WANDB_TARGET, ignore_errors=True)  # a half install (killed) is redone
        here = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}
        constraints = WANDB_TARGET.with_name(f".{WANDB_TARGET.name}.constraints.txt")
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in here.items() if n.lower() != "wandb"))
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target",
                               str(WANDB_TARGET), "-c", str(constraints), WANDB_PIN], capture_output=True, text=True)
        constraints.unlink()
        assert proc.returncode == 0, f"pip install --target {WANDB_TARGET} {WANDB_PIN} failed:\n{proc.stderr[-3000:]}"
        stamp.write_text(WANDB_PIN)
    return WANDB_TARGET


def wandb_records(path: Path, record_type):
    """The records of a W&B transaction log (run-<id>.wandb: LevelDB's log format of protobuf Records), as `wandb
    sync` reads them. Runs in the subprocess that has wandb (record_type: its protobuf Record)."""
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = record_type()
            record.ParseFromString(pending)
            yield record


def offline_run(path: Path) -> dict:
    """The config, summary and history rows of a W&B offline run, read from its transaction log."""
    from wandb.proto import wandb_internal_pb2

    def values(items) -> dict:
        return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}

    config, summary, history, name = {}, {}, [], ""
    for record in wandb_records(path, wandb_internal_pb2.Record):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            config |= values(record.run.config.update)
            name = record.run.display_name or name
        elif kind == "summary":
            summary |= values(record.summary.update)
        elif kind == "history":
            history.append(values(record.history.item))
    return dict(config=config, summary=summary, history=history, name=name)


# run with wandb on PYTHONPATH, after the imports and the two readers above: a replay with --tracker wandb, a second
# replay, then what the offline run holds
WANDB_IMPORTS = "import json, struct, sys\nfrom pathlib import Path\n\nfrom tools import track\n\n"
WANDB_REPLAY = """
logs, name, out = sys.argv[1:]
codes = [track.main(["--run", name, "--log_dir", logs, "--tracker", "wandb"]),
         track.main(["--run", name, "--log_dir", logs])]  # the trackers tracking.json names: nothing new
found = sorted(Path(logs, name, "wandb").glob("offline-run-*/run-*.wandb"))
runs = {r["name"]: r for r in map(offline_run, found)}
Path(out).write_text(json.dumps(dict(codes=codes, found=[str(f) for f in found], runs=runs)))
"""


def test_wandb_logs_offline_into_the_run_folder_with_the_config_and_the_cv_f1(own_run, tmp_path):
    """W&B offline (WANDB_MODE unset), in W&B's K-fold layout: a run per fold and one for the whole run, in the run
    folder. They hold the config, each epoch's val_f1 (step = epoch), the confusion figures, and cv.json's cv_f1 in the
    whole run's summary; a second replay opens no W&B run again. wandb is not in requirements.txt, so this runs in a
    subprocess that finds the pinned one in .cache/."""
    logs, name = own_run
    run = RunDir(logs, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= dict(PYTHONPATH=os.pathsep.join(filter(None, [str(wandb_folder()), os.environ.get("PYTHONPATH")])),
                WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
                WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    script = WANDB_IMPORTS + inspect.getsource(wandb_records) + inspect.getsource(offline_run) + WANDB_REPLAY
    out = tmp_path / "offline.json"
    proc = subprocess.run([sys.executable, "-c", script, str(logs), name, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["codes"] == [0, 0] and proc.stdout.strip().endswith(": nothing new to send"), proc.stdout
    assert "W&B offline (WANDB_MODE unset)" in proc.stdout and f"wandb sync {run.wandb}/offline-run-*" in proc.stdout
    runs = got["runs"]
    assert sorted(runs) == [name, f"{name}.fold0", f"{name}.fold1"]
    assert len(got["found"]) == 3 and len(list(run.wandb.glob("offline-run-*"))) == 3  # the second opened none
    saved = __import__("yaml").safe_load(run.config.read_text())
    for config in (r["config"] for r in runs.values()):
        assert config["model"] == saved["model"] and config["lr"] == saved["lr"] and config["git_commit"]
    assert runs[name]["summary"]["cv_f1"] == pytest.approx(json.loads(run.cv.read_text())["cv_f1"])
    metrics = pd.read_csv(run.metrics)
    assert [h["val_f1"] for h in runs[f"{name}.fold0"]["history"] if "val_f1" in h] == pytest.approx(
        metrics[metrics["fold"] == 0].sort_values("epoch")["val_f1"].tolist())
    assert any(key.startswith("fold1/confusion") for h in runs[f"{name}.fold1"]["history"] for key in h)


def test_a_sweep_trial_goes_to_the_studys_experiment_tagged_with_trial_and_state(own_run, empty_store, capsys):
    logs, name = own_run
    shutil.move(logs / name, logs / "st-000")
    run = RunDir(logs, "st-000")
    sweep = dict(study="st", trial=0, attempt=0, params={"lr": 0.001}, state="running", fold=0, epoch=1)
    run.sweep.write_text(json.dumps(sweep))
    uri = store_in(logs, empty_store)
    assert cli(track.main, "--run", "st-000", "--log_dir", logs, "--tracker", "mlflow", capsys=capsys)[0] == 0
    parent, _ = runs_of(uri, "st")
    assert (parent.data.tags["study"], parent.data.tags["trial"], parent.data.tags["state"]) == ("st", "0", "running")
    run.sweep.write_text(json.dumps(sweep | dict(state="complete", value=0.5)))
    assert cli(track.main, "--run", "st-000", "--log_dir", logs, capsys=capsys)[0] == 0
    assert runs_of(uri, "st")[0].data.tags["state"] == "complete"


@pytest.mark.parametrize("extra, message", [
    (["--tracker", "mlfow"], "--tracker 'mlfow' is not supported; choose one or more of: none, mlflow, wandb"),
    (["--tracker", "none,mlflow"], "--tracker none cannot go with mlflow"),
    (["--tracker", "mlflow", "--tracking_uri", "ftp://host/x"], "use sqlite:///PATH (an embedded store"),
    (["--tracker", "mlflow", "--tracking_uri", "http://127.0.0.1:{port}"], "no MLflow server answers there"),
    (["--tracker", "wandb", "--hide", "wandb"], "install it with: pip install wandb==0.31.0   (not in requirements"),
    (["--tracker", "mlflow", "--hide", "mlflow"], "install it with: pip install mlflow==3.17.2   (it is in"),
    (["--tracker", "wandb", "--fake", "wandb", "--env", "WANDB_MODE=online"], "W&B finds no API key here"),
], ids=["unknown", "none-and-mlflow", "scheme", "unreachable", "no-wandb", "no-mlflow", "wandb-online-no-key"])
def test_a_tracker_fault_is_one_line_exit_2_and_no_run_folder(dataset, tmp_path, monkeypatch, capsys, extra,
                                                               message):
    if "--hide" in extra:  # the package as if it were not installed (wandb is not, unless a user added it)
        i = extra.index("--hide")
        monkeypatch.setitem(sys.modules, extra.pop(i + 1), None)
        extra.pop(i)
    if "--fake" in extra:  # an importable stand-in: the check after the import is under test, not wandb itself
        i = extra.index("--fake")
        name = extra.pop(i + 1)
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        extra.pop(i)
    if "--env" in extra:
        i = extra.index("--env")
        key, value = extra.pop(i + 1).split("=")
        extra.pop(i)
        monkeypatch.setenv(key, value)
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    extra = [e.format(port=free_port()) for e in extra]
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path / "logs", "--name", "r", *TINY, *extra,
                    capsys=capsys)
    assert code == 2 and message in one_line(err), err
    assert not (tmp_path / "logs" / "r").exists()


def test_a_read_only_store_is_one_line_before_training(dataset, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    with sqlite3.connect(store / "mlflow.db") as con:
        con.execute("create table t (a)")
    with read_only(store):
        code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path / "logs", "--name", "r", *TINY,
                        "--tracker", "mlflow", "--tracking_uri", f"sqlite:///{store / 'mlflow.db'}", capsys=capsys)
    assert code == 2 and "the MLflow store cannot be written" in one_line(err), err
    assert not (tmp_path / "logs" / "r").exists()


def test_a_store_that_is_not_a_database_says_so_before_training(dataset, tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    store.write_bytes(bytes(range(256)) * 16)  # random bytes: no permission would make this a store
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path / "logs", "--name", "r", *TINY,
                    "--tracker", "mlflow", "--tracking_uri", f"sqlite:///{store}", capsys=capsys)
    line = one_line(err)
    assert code == 2 and f"{store} is not an SQLite database" in line and "move it away or give another" in line
    assert "writable" not in line and not (tmp_path / "logs" / "r").exists()


def test_infer_refuses_an_unreachable_tracker_before_predicting(tmp_path, capsys):
    code, err = cli(infer.main, "--data_dir", tmp_path, "--log_dir", tmp_path, "--run", "nothing", "--tracker",
                    "mlflow", "--tracking_uri", f"http://127.0.0.1:{free_port()}", capsys=capsys)
    assert code == 2 and "no MLflow server answers there" in one_line(err)


def test_tracker_packages_are_imported_only_inside_functions():
    """Importing src (train.py --help, every entry point) never imports mlflow or wandb: only choosing them does."""
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tools").glob("*.py"), *ROOT.glob("*.py")]
    top_level = []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(
                node, ast.ImportFrom) else []
            top_level += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("mlflow", "wandb")]
    assert top_level == []


BUILD = """
import sys
from pathlib import Path
from src.run import trackers
Path(sys.argv[2]).touch()  # imported: the build starts now
trackers.whole_store(Path(sys.argv[1]))
"""


def test_a_store_killed_while_mlflow_builds_it_is_never_half_made(tmp_path):
    """kill -9 at moments through the first build of a store (MLflow's dozens of schema migrations): the store is
    absent or whole every time, and the next process builds it or uses it."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    from src.run.trackers import store_state, whole_store

    head = _get_latest_schema_revision()
    for delay in (0.3, 1.0, 2.0):
        db, marker = tmp_path / f"k{delay}" / "mlflow.db", tmp_path / f"started{delay}"
        db.parent.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", BUILD, str(db), str(marker)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True)
        while not marker.exists() and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert not db.exists() or store_state(db)[1] == head, delay  # never a schema behind its tables
        whole_store(db)
        assert store_state(db)[1] == head and not list(db.parent.glob("*.tmp")), delay


def test_a_half_made_store_is_built_again_when_empty_and_named_when_it_holds_runs(tmp_path, empty_store, capsys):
    """A store whose schema stopped behind its tables (what a kill during MLflow's own creation left): without runs
    it is built again, said in one line, and tracking works; with a run, one line says what to move away and the file
    is left as it was."""
    from src.errors import ConfigError
    from src.run.logging import setup_logging
    from src.run.trackers import store_state, whole_store

    setup_logging()  # the console's lines, as every command has them

    def half_made(db: Path):
        with sqlite3.connect(db) as con:
            con.execute("UPDATE alembic_version SET version_num = '3500859a5d39'")

    db = tmp_path / "empty" / "mlflow.db"
    uri = store_in(db.parent, empty_store)
    head = store_state(db)[1]
    half_made(db)
    whole_store(db)
    assert store_state(db)[1] == head
    line = [x for x in capsys.readouterr().err.splitlines() if "half made" in x]
    assert len(line) == 1 and str(db) in line[0] and "3500859a5d39" in line[0] and "no runs" in line[0]
    client(uri).create_experiment("works")

    db = tmp_path / "used" / "mlflow.db"
    uri = store_in(db.parent, empty_store)
    c = client(uri)
    c.create_run(c.create_experiment("e"))
    half_made(db)
    before = db.read_bytes()
    with pytest.raises(ConfigError) as caught:
        whole_store(db)
    message = str(caught.value)
    assert "\n" not in message and "holds 1 run(s)" in message and f"mv {db} {db}.old" in message
    assert db.read_bytes() == before
    (tmp_path / "other.db").unlink(missing_ok=True)
    with sqlite3.connect(tmp_path / "other.db") as con:
        con.execute("create table notes (a)")
    with pytest.raises(ConfigError, match="an SQLite file of other tables \\(notes\\), not an MLflow store"):
        whole_store(tmp_path / "other.db")


def test_an_epoch_the_store_holds_is_not_sent_again_when_the_ledger_is_behind(own_run, tmp_path, empty_store,
                                                                              dataset, capsys):
    """A kill after an epoch reached MLflow and before tracking.json recorded it leaves the ledger one epoch behind (and
    cv.json's figures unrecorded): tools.track, then a resume of the run, send each step once."""
    logs, name = own_run
    run = RunDir(logs, name)
    uri = store_in(logs, empty_store)
    assert track.main(["--run", name, "--log_dir", str(logs), "--tracker", "mlflow"]) == 0
    capsys.readouterr()

    def behind():
        ledger = json.loads(run.tracking.read_text())
        target = next(iter(ledger["targets"].values()))
        target["epochs"] = {k: v - 1 for k, v in target["epochs"].items()}
        del target["cv"]
        run.tracking.write_text(json.dumps(ledger))

    def each_step_once():
        parent, children = runs_of(uri, logs.name)
        metrics = pd.read_csv(run.metrics)
        for k, child in children.items():
            for key in ("epoch", "val_f1", "train_loss"):
                got = [s for s, _ in steps(uri, child.info.run_id, key)]
                assert got == metrics[metrics["fold"] == k]["epoch"].tolist(), (k, key, got)
        assert len(steps(uri, parent.info.run_id, "cv_f1")) == 1
        return parent, children

    behind()
    assert track.main(["--run", name, "--log_dir", str(logs)]) == 0
    assert "epochs" not in capsys.readouterr().out  # both folds' last epochs were in the store already
    each_step_once()
    behind()
    assert cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--resume",
               capsys=capsys)[0] == 0
    each_step_once()


@pytest.mark.slow
def test_a_tracker_that_takes_10_s_an_answer_never_holds_the_training_loop(few_people, tmp_path):
    """Every batch of epochs takes the tracker 10 s to answer: the loop hands over each epoch's writes and trains the
    next before the first answer comes (syncs run on the run's tracking thread, and the writer thread stops waiting
    for them when the loop needs it), and at the run's end each epoch has arrived once."""
    from bench.slow_tracker import handovers, slow_tracker

    with slow_tracker(10.0) as tracker, handovers() as spans:
        trainer.train(tiny_cfg(data_dir=few_people, log_dir=tmp_path, name="slow", fold=0, epochs=3, tracker="wandb",
                               batch_size=4))
    assert len(spans) == 3 and spans[-1][1] < tracker.answers[0]  # every epoch handed over before the first answer
    assert dict(tracker.sent) == {0: [0, 1, 2]}
