"""sweep.py end to end on tiny data: trials are ordinary runs, pruning, workers sharing a study (SQLite and a real
PostgreSQL server), and a worker killed with kill -9 whose trial is retried and resumes its run."""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import train
from src.config.parsing import parse
from src.config.schema import SweepConfig
from src.errors import ConfigError
from src.run.rundir import RunDir
from src.sweep import study as studies
from src.sweep import worker
from src.sweep.space import load_spec
from tests.helpers import ROOT, TINY, run_py

pytestmark = pytest.mark.slow

FIXED = [a for key, value in zip(TINY[::2], TINY[1::2]) if key not in ("--infer_batch_size", "--lr") for a in (key, value)]


def sweep_file(tmp_path, n_trials=3, space="lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n  head: {choices: [linear, arcface]}",
               pruner="none", base="experiments/quick.yaml") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"base: {ROOT / base}\nobjective: {{folds: '0'}}\nspace:\n  {space}\nn_trials: {n_trials}\n"
                    f"sampler: {{name: tpe, seed: 0}}\npruner: {pruner}\n")
    return path


def sweep_cmd(sweep: Path, study: str, dataset, logs, *extra) -> list[str]:
    return [sys.executable, "sweep.py", "--sweep", str(sweep), "--study", study, "--data_dir", str(dataset),
            "--log_dir", str(logs), *FIXED, *extra]


def load(logs, study, storage=""):
    return studies.load_study(studies.open_storage(storage, logs, 60), study)


def test_a_seeded_sweep_trains_ordinary_runs_and_the_best_command_reproduces_its_cv(dataset, tmp_path, capsys):
    logs = tmp_path / "logs"
    run_py(*sweep_cmd(sweep_file(tmp_path), "s", dataset, logs)[1:])
    study = load(logs, "s")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        run = RunDir(logs, t.user_attrs["run"])
        assert run.name == f"s-{t.number:03d}" and run.config.is_file() and run.last(0).is_file()
        assert json.loads(run.cv.read_text())["cv_f1"] == pytest.approx(t.value)
        record = json.loads(run.sweep.read_text())
        assert (record["study"], record["trial"], record["state"]) == ("s", t.number, "complete")
        assert record["params"] == t.params
    shown = run_py("sweep.py", "--study", "s", "--log_dir", logs, "--show").stdout
    best = study.best_trial
    lines = shown.splitlines()
    assert lines[3].startswith(f"| {best.number} | complete | {best.value:.4f}")  # best first
    assert "importances" in shown
    command = next(line for line in lines if line.startswith(f"trial {best.number}: python train.py "))
    args = shlex.split(command.split(": ", 1)[1])[2:]
    args[args.index("--name") + 1] = "again"
    assert train.main(args) == 0
    assert json.loads(RunDir(logs, "again").cv.read_text())["cv_f1"] == pytest.approx(best.value)
    capsys.readouterr()
    run_py("-m", "tools.report", "--log_dir", logs, "--study", "s", "--out", tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "<h2>study s</h2>" in page and page.count("<td>complete</td>") == 3
    for plot in ("optimisation history", "parameter importances", "parallel coordinates"):
        assert f"<h3>{plot}</h3><img src=\"data:image/png;base64," in page


def test_a_deliberately_bad_trial_is_pruned(dataset, tmp_path):
    logs = tmp_path / "logs"
    fixed = ["--img_height", "64", "--img_width", "48", "--epochs", "3", "--batch_size", "8", "--num_workers", "0",
             "--n_folds", "2", "--data_dir", str(dataset), "--log_dir", str(logs)]
    path = sweep_file(tmp_path, 2, "lr: {choices: [0.001, 1.0e-9]}",
                      "{name: median, n_startup_trials: 1, n_warmup_steps: 0}")
    cfg = parse(["--study", "p", "--sweep", str(path)], SweepConfig)
    w = worker.Worker(cfg, load_spec(path, fixed), fixed, studies.open_storage("", logs, 60))
    w.study.enqueue_trial({"lr": 0.001})
    w.study.enqueue_trial({"lr": 1e-9})  # no learning at all: its first epoch is below the first trial's
    w.run()
    good, bad = w.study.get_trials()
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert len(bad.intermediate_values) < 3
    record = json.loads(RunDir(logs, "p-001").sweep.read_text())
    assert record["state"] == "pruned" and record["epoch"] == max(bad.intermediate_values)
    assert "pruned: 1 of 2 trials" in studies.show_text(w.study)


def test_only_validated_epochs_report_to_the_pruner(dataset, tmp_path):
    logs = tmp_path / "logs"
    fixed = ["--img_height", "64", "--img_width", "48", "--epochs", "3", "--val_every", "2", "--batch_size", "8",
             "--num_workers", "0", "--n_folds", "2", "--data_dir", str(dataset), "--log_dir", str(logs)]
    path = sweep_file(tmp_path, 1, "lr: {choices: [0.001]}", "{name: median, n_startup_trials: 0, n_warmup_steps: 0}")
    cfg = parse(["--study", "v", "--sweep", str(path)], SweepConfig)
    w = worker.Worker(cfg, load_spec(path, fixed), fixed, studies.open_storage("", logs, 60))
    w.run()
    (trial,) = w.study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2]  # epoch 0 was not validated; epoch 2 is the fold's last


def test_two_workers_on_the_embedded_storage_run_n_trials_in_all(dataset, tmp_path):
    logs = tmp_path / "logs"
    cmd = sweep_cmd(sweep_file(tmp_path, 2), "two", dataset, logs)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trials = [t for t in load(logs, "two").get_trials() if not t.user_attrs.get(studies.SURPLUS)]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(runs)) == 2
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 2  # workers started together draw apart
    for run in runs:  # each run trained once: one header line in its log
        assert RunDir(logs, run).train_log.read_text().count(" INFO run ") == 1


def test_a_worker_killed_mid_trial_is_retried_and_the_retry_resumes_its_run(dataset, tmp_path):
    logs = tmp_path / "logs"
    cmd = sweep_cmd(sweep_file(tmp_path, 1), "k", dataset, logs, "--epochs", "6", "--heartbeat_grace", "3")
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = RunDir(logs, "k-000").last(0)
    deadline = time.monotonic() + 300
    while not last.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.is_file() and first.poll() is None, "the first worker never saved an epoch"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = run_py(*cmd[1:])
    trials = load(logs, "k").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert studies.is_retry(trials[1]) and trials[1].params == trials[0].params
    assert trials[1].user_attrs["run"] == "k-000"
    log = RunDir(logs, "k-000").train_log.read_text()
    assert "fold 0: resumed from" in log and json.loads(RunDir(logs, "k-000").sweep.read_text())["state"] == "complete"
    shown = studies.show_text(load(logs, "k"))
    assert "| 0 | failed, retried |" in shown and "| 1 (retry of 0) | complete |" in shown
    assert "sweep k: 1 trials counted, 1 finished" in second.stderr + second.stdout


def test_sigterm_stops_the_worker_and_queues_its_trial_again(dataset, tmp_path):
    logs = tmp_path / "logs"
    cmd = sweep_cmd(sweep_file(tmp_path, 2), "t", dataset, logs, "--epochs", "6")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = RunDir(logs, "t-000").last(0)
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.is_file() and proc.poll() is None, "the worker never saved an epoch"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM) in fold 0" in err and "queued again" in err
    assert "Traceback" not in err and "failed with parameters" not in err  # Optuna's record of it is not shown
    trials = load(logs, "t").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING] and studies.is_retry(trials[1])
    assert json.loads(RunDir(logs, "t-000").sweep.read_text())["state"] == "interrupted"


def test_a_worker_bringing_another_search_is_refused_and_n_trials_can_grow(dataset, tmp_path):
    logs = tmp_path / "logs"
    fixed = ["--data_dir", str(dataset), "--log_dir", str(logs), *FIXED]
    first = sweep_file(tmp_path, 3)

    def worker_of(path, *own):
        cfg = parse(["--study", "w", "--sweep", str(path), *own], SweepConfig)
        return worker.Worker(cfg, load_spec(path, fixed), fixed, studies.open_storage("", logs, 60))

    assert worker_of(first).n_trials == 3
    assert worker_of(first, "--n_trials", "5").n_trials == 5  # extends the study
    assert worker_of(first).n_trials == 5  # the study keeps it
    other = tmp_path / "other"
    other.mkdir()
    changed = sweep_file(other, 3, pruner="median")
    with pytest.raises(ConfigError, match="study w was started with another pruner"):
        worker_of(changed)
    more_epochs = [*fixed, "--epochs", "3"]  # the later --epochs wins
    with pytest.raises(ConfigError, match="started with another --epochs"):
        cfg = parse(["--study", "w", "--sweep", str(first)], SweepConfig)
        worker.Worker(cfg, load_spec(first, more_epochs), more_epochs, studies.open_storage("", logs, 60))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of Debian's packages in a temporary folder, run as the postgres user."""
    bin_dir = postgres_bin()
    if bin_dir is None or shutil.which("runuser") is None:
        pytest.skip("no PostgreSQL server here: apt-get install postgresql (what .ci/run does) enables this test")
    folder = Path(f"/tmp/maskcls-pg-{os.getpid()}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.chown(folder, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, bin_dir / "initdb", "-D", folder / "data", "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    port = free_port()
    subprocess.run([*as_pg, bin_dir / "pg_ctl", "-D", folder / "data", "-l", folder / "log", "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_pg, bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "sweeps"], check=True,
                       capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_pg, bin_dir / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_through_a_real_postgresql_server(postgres, dataset, tmp_path):
    logs = tmp_path / "logs"
    cmd = sweep_cmd(sweep_file(tmp_path, 2), "pg", dataset, logs, "--storage", postgres)
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    study = optuna.load_study(study_name="pg", storage=postgres)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and len({t.user_attrs["run"] for t in done}) == 2
    assert not (logs / studies.EMBEDDED).exists()  # the server holds the study, not log_dir
    shown = run_py("sweep.py", "--study", "pg", "--storage", postgres, "--log_dir", logs, "--show").stdout
    assert shown.startswith("study pg: 2 trials")
