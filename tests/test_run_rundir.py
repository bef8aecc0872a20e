"""src/run/rundir.py: paths, the claim rule, and an existing run refused or replaced."""
import os

import pytest

import train
from src.config.schema import CHECKPOINT_KINDS
from src.errors import ConfigError, RunExists
from src.run.rundir import RunDir, latest, prediction_files
from tests.helpers import ROOT, TINY, cli, one_line, read_only, run_py


def test_paths_of_a_run(tmp_path):
    run = RunDir(tmp_path, "r")
    assert run.config == tmp_path / "r" / "config.yaml" and run.metrics.name == "metrics.csv"
    assert run.last(2) == tmp_path / "r" / "fold2" / "last.pt" and run.oof(0).name == "oof.csv"
    assert [run.checkpoint(1, k).name for k in CHECKPOINT_KINDS] == ["best_f1.pt", "best_loss.pt", "best_acc.pt",
                                                                      "last.pt"]
    with pytest.raises(ConfigError, match="choose one of: best_f1, best_loss, best_acc, last"):
        run.checkpoint(0, "best")
    files = prediction_files(tmp_path / "subs" / "x.csv")  # named after the submission: x.* never replaces y.*
    assert files["probs"] == tmp_path / "subs" / "x.probs.csv" and files["settings"] == tmp_path / "subs" / "x.yaml"
    assert files["preview"] == tmp_path / "subs" / "x.preview.png"
    own = prediction_files(run.submission)  # a run's own submission keeps the run folder's names
    assert (own["probs"].name, own["preview"].name, own["settings"].name) == ("eval_probs.csv", "eval_preview.png",
                                                                              "inference.yaml")


def test_claim_new_resume_overwrite(tmp_path):
    run = RunDir(tmp_path, "r")
    assert run.claim(resume=False, overwrite=False) == "new" and run.root.is_dir()
    assert run.claim(resume=False, overwrite=False) == "new"  # a folder without config.yaml is no run yet
    run.config.write_text("lr: 0.1\n")
    (run.root / "fold0").mkdir()
    with pytest.raises(RunExists, match="already exists; use --resume .* or --overwrite"):
        run.claim(resume=False, overwrite=False)
    assert run.claim(resume=True, overwrite=False) == "resumed" and run.folds() == [0]
    assert run.claim(resume=False, overwrite=True) == "replaced"
    assert run.root.is_dir() and not any(run.root.iterdir())


def test_latest_run(tmp_path):
    assert latest(tmp_path) is None
    for name in ("a", "b"):
        RunDir(tmp_path, name).claim(False, False)
        RunDir(tmp_path, name).config.write_text("x: 1\n")
    os.utime(RunDir(tmp_path, "a").config, (1e9, 1e9))
    assert latest(tmp_path) == "b"


@pytest.mark.slow
def test_existing_run_is_refused_without_resume_or_overwrite(trained_run, dataset, capsys):
    log_dir, name = trained_run
    code, err = cli(train.main, "--data_dir", dataset, "--name", name, "--log_dir", log_dir, *TINY, capsys=capsys)
    assert code == 1 and "--resume" in err and "--overwrite" in err
    before = (log_dir / name / "metrics.csv").read_text()
    code, err = cli(train.main, "--data_dir", dataset, "--name", name, "--log_dir", log_dir, *TINY, "--resume",
                    capsys=capsys)
    assert code == 0 and "finished earlier, skipped" in err
    assert (log_dir / name / "metrics.csv").read_text() == before


@pytest.mark.slow
def test_overwrite_replaces_a_run(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--name", "w", "--log_dir", tmp_path, *TINY, "--fold", "0", "--epochs", "1"]
    assert cli(train.main, *args, capsys=capsys)[0] == 0
    (tmp_path / "w" / "marker").write_text("old")
    assert cli(train.main, *args, "--overwrite", capsys=capsys)[0] == 0
    assert not (tmp_path / "w" / "marker").exists() and (tmp_path / "w" / "fold0" / "last.pt").is_file()


def test_a_name_taken_by_a_file_or_a_foreign_folder_is_refused_without_a_lock_file(dataset, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes").write_text("mine")
    (logs / "photos").mkdir()
    (logs / "photos" / "holiday.jpg").write_bytes(b"x")
    for name, says in (("notes", "exists and is not a run folder"), ("photos", "is a folder of other files")):
        code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, capsys=capsys)
        assert code == 1 and says in one_line(err)
    assert sorted(p.name for p in logs.iterdir()) == ["notes", "photos"]  # no .notes.lock, nothing written
    assert (logs / "notes").read_text() == "mine"


@pytest.mark.parametrize("length", [250, 300])
def test_a_name_too_long_for_its_lock_files_is_refused_before_any_work(dataset, tmp_path, capsys, length):
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "r" * length, *TINY,
                    capsys=capsys)
    assert code == 2 and "limit on file names; use at most 241 bytes" in one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_cache_is_reserved_for_the_image_cache(capsys):
    code, err = cli(train.main, "--name", "cache", capsys=capsys)
    assert code == 2 and one_line(err) == "error: --name 'cache' is reserved for log_dir/cache; choose another name"
    with pytest.raises(ConfigError, match="reserved for log_dir/cache"):
        RunDir("logs", "cache")


@pytest.mark.slow
def test_training_into_a_read_only_log_dir_is_one_line(dataset, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    with read_only(logs):
        code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", "r", *TINY, capsys=capsys)
    assert code == 1 and "Read-only file system" in one_line(err) and str(logs) in one_line(err)
    assert "Traceback" not in err


def test_overwrite_is_refused_while_a_reader_holds_the_run(tmp_path):
    """A process reading a run (infer, predict, export, pseudo labels, report) holds it shared: --overwrite may not
    delete it under the reader, whose outputs would land in the new run."""
    import subprocess
    import sys

    from src.errors import RunBusy

    run = RunDir(tmp_path, "ow")
    run.root.mkdir()
    run.config.write_text("name: ow\n")
    hold = ("import sys, time\nfrom src.run.rundir import RunDir\n"
            "with RunDir(sys.argv[1], 'ow').reading():\n    print('held', flush=True)\n    time.sleep(600)\n")
    reader = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held\n"
        with RunDir(tmp_path, "ow").reading():  # readers do not exclude each other
            pass
        with pytest.raises(RunBusy, match="run ow cannot be replaced: it is held by a reader"):
            run.claim(resume=False, overwrite=True)
        assert run.config.read_text() == "name: ow\n"
    finally:
        reader.kill()
        reader.wait()
    assert run.claim(resume=False, overwrite=True) == "replaced" and not run.config.exists()


def test_a_reader_of_a_run_in_a_read_only_log_dir_needs_no_lock_file(tmp_path):
    run = RunDir(tmp_path, "r")
    run.root.mkdir()
    with read_only(tmp_path):
        with run.reading():
            assert not run.readers_lock_file().exists()
