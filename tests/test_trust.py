"""Untrusted data, run names, checkpoints, parallel folds, full disks and non-finite numbers (issue 9):
each case ends in one clear line, and nothing outside the data or the run is read, written or deleted."""
import errno
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

import infer
import pseudo_train
import train
from tests.helpers import ROOT, TINY, make_data
from src.run import atomic
from src.data import cache
from src.errors import DataError
from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.tables import load_train
from src.data.loaders import make_loader
from src.run.rundir import RunDir


def cli(main, *args, capsys):
    """(exit code, stderr) of an entry point's main() run in this process."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def copy_data(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "d")


def first_eval_image(data):
    return data / "eval" / "images" / pd.read_csv(data / "eval" / "info.csv", dtype=str)["ImageID"][0]


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- paths stay inside the data ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../../../outside/victim", "/etc", "a/../../b", ""])
def test_train_csv_path_outside_the_data_is_refused_by_row(dataset, tmp_path, capsys, bad):
    data = copy_data(dataset, tmp_path)
    (tmp_path / "outside" / "victim").mkdir(parents=True)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str, keep_default_na=False)
    people.loc[1, "path"] = bad
    people.to_csv(data / "train" / "train.csv", index=False)
    code, err = cli(train.main, "--data_dir", data, "--check_data", capsys=capsys)
    assert code == 1 and f"train.csv row 3 (id {people.loc[1, 'id']}): path {bad!r} " in err
    assert "victim" not in capsys.readouterr().out and "passwd" not in err
    code, err = cli(train.main, "--data_dir", data, "--log_dir", tmp_path / "logs", "--name", "x", *TINY,
                    capsys=capsys)
    assert code == 1 and "row 3" in err and not (tmp_path / "logs" / "x").exists()


def test_symlink_out_of_the_images_folder_is_refused_but_a_symlinked_images_folder_works(dataset, tmp_path, capsys):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    (tmp_path / "elsewhere").mkdir()
    (data / "train" / "images" / "link").symlink_to(tmp_path / "elsewhere")
    people.loc[0, "path"] = "link"
    people.to_csv(data / "train" / "train.csv", index=False)
    code, err = cli(train.main, "--data_dir", data, "--check_data", capsys=capsys)
    assert code == 1 and "train.csv row 2" in err and "resolves outside" in err

    moved = copy_data(dataset, tmp_path / "m")
    shutil.move(moved / "train" / "images", tmp_path / "disk2")
    (moved / "train" / "images").symlink_to(tmp_path / "disk2")
    assert len(load_train(moved)) == 168


def test_two_ids_sharing_one_folder_is_an_error(dataset, tmp_path):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[1, "path"] = people.loc[0, "path"]
    people.to_csv(data / "train" / "train.csv", index=False)
    with pytest.raises(DataError, match=f"row 3 .*is also the folder of id {people.loc[0, 'id']}"):
        load_train(data)


@pytest.mark.parametrize("bad", ["/some/where/secret.jpg", "../train/train.csv", "x/./y.jpg"])
def test_absolute_or_escaping_image_id_is_refused_everywhere(trained_run, dataset, tmp_path, capsys, bad):
    log_dir, name = trained_run
    data = copy_data(dataset, tmp_path)
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    info.loc[2, "ImageID"] = bad
    info.to_csv(data / "eval" / "info.csv", index=False)
    code, err = cli(train.main, "--data_dir", data, "--check_data", capsys=capsys)
    assert code == 1 and f"info.csv row 4: ImageID {bad!r}" in err
    code, err = cli(infer.main, "--data_dir", data, "--log_dir", log_dir, "--run", name, "--out", tmp_path / "s.csv",
                    capsys=capsys)
    assert code == 1 and "info.csv row 4" in one_line(err) and not (tmp_path / "s.csv").exists()
    code, err = cli(pseudo_train.main, "--data_dir", data, "--log_dir", tmp_path / "logs", "--run", name, "--name",
                    "p", *TINY, capsys=capsys)
    assert code != 0


def test_unlabeled_dir_entries_that_resolve_outside_it_are_refused(tmp_path):
    from src.data.tables import load_unlabeled

    (tmp_path / "unl").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (tmp_path / "unl" / "a.jpg").write_bytes(b"x")
    (tmp_path / "unl" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DataError, match="link.jpg: resolves outside unlabeled_dir"):
        load_unlabeled("unused", str(tmp_path / "unl"))


# --- run names and --overwrite --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", "", "a/b", "/tmp/x", ".hidden"])
def test_unsafe_run_names_are_refused_and_delete_nothing(dataset, tmp_path, capsys, name):
    logs = tmp_path / "logs"
    (logs / "keep").mkdir(parents=True)
    (logs / "keep" / "config.yaml").write_text("x: 1\n")
    (tmp_path / "unrelated.txt").write_text("mine")
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, f"--name={name}", "--overwrite", *TINY,
                    capsys=capsys)
    assert code == 2 and "is not a run name: use letters, digits" in err
    assert (logs / "keep" / "config.yaml").is_file() and (tmp_path / "unrelated.txt").is_file()
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--runs", "keep", name or "''",
                    capsys=capsys)
    assert code == 2


@pytest.mark.slow
def test_overwrite_deletes_only_after_every_check_passes(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, "--fold", "0", "--epochs", "1"]
    assert cli(train.main, *args, capsys=capsys)[0] == 0
    before = RunDir(tmp_path, "r").last(0).read_bytes()
    for extra, message in ((["--pretrained", "true", "--pretrained_path", tmp_path / "typo.pth"], "file not found"),
                           (["--n_folds", "50"], "n_folds 50 does not fit the data"),
                           (["--pseudo_csv", tmp_path / "none.csv"], "pseudo_csv not found"),
                           (["--lr", "-1"], "--lr must be > 0")):
        code, err = cli(train.main, *args, "--overwrite", *extra, capsys=capsys)
        assert code in (1, 2) and message in one_line(err)
        assert RunDir(tmp_path, "r").last(0).read_bytes() == before  # the old run is untouched


def test_bad_values_fail_before_a_run_folder_exists_so_the_rerun_works(dataset, tmp_path, capsys):
    for bad in (["--lr", "nan"], ["--lr", "-1"], ["--n_folds", "50"], ["--weight_decay", "inf"]):
        code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, *bad,
                        capsys=capsys)
        assert code in (1, 2) and one_line(err)
        assert not (tmp_path / "r").exists()


def test_n_folds_message_names_the_smallest_stratum(dataset):
    with pytest.raises(DataError, match=r"smallest stratum \(\w+, age [^)]+\) has 3 people.*--n_folds 3 or fewer"):
        load_train(dataset, n_folds=4)


# --- CSV edge cases ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("age, message", [("²", "is not a whole number"), ("-3", "is out of range 0..120"),
                                          ("200", "is out of range 0..120"), ("4.5", "is not a whole number"),
                                          ("", "is not a whole number")])
def test_ages_are_ascii_whole_numbers_in_range(dataset, tmp_path, age, message):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[4, "age"] = age
    people.to_csv(data / "train" / "train.csv", index=False)
    with pytest.raises(DataError, match=f"row 6 .*age {age!r} {message}"):
        load_train(data)


def test_age_zero_and_120_are_accepted(dataset, tmp_path):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[[0, 1], "age"] = ["0", "120"]
    people.to_csv(data / "train" / "train.csv", index=False)
    assert set(load_train(data)["age"]) >= {0, 120}


def test_info_csv_without_rows_or_with_a_duplicate_is_an_error(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    data = copy_data(dataset, tmp_path)
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    info.iloc[:0].to_csv(data / "eval" / "info.csv", index=False)
    code, err = cli(train.main, "--data_dir", data, "--check_data", capsys=capsys)
    assert code == 1 and "info.csv: no rows" in err
    code, err = cli(infer.main, "--data_dir", data, "--log_dir", log_dir, "--run", name, "--out", tmp_path / "s.csv",
                    capsys=capsys)
    assert code == 1 and "info.csv: no rows" in one_line(err)
    pd.concat([info, info.iloc[[3]]]).to_csv(data / "eval" / "info.csv", index=False)
    code, err = cli(infer.main, "--data_dir", data, "--log_dir", log_dir, "--run", name, "--out", tmp_path / "s.csv",
                    capsys=capsys)
    assert code == 1 and f"ImageID {info['ImageID'][3]!r} appears 2 times" in one_line(err)


# --- images ----------------------------------------------------------------------------------------------

def test_data_error_survives_pickling_and_a_worker(tmp_path):
    e = pickle.loads(pickle.dumps(DataError(["a.jpg: bad", "b.jpg: worse"])))
    assert e.problems == ["a.jpg: bad", "b.jpg: worse"]
    (tmp_path / "empty.jpg").write_bytes(b"")
    ds = FaceDataset(FileImages([tmp_path / "empty.jpg"] * 4))
    loader = make_loader(ds, torch.device("cpu"), 1, num_workers=2, prefetch_factor=2)
    with pytest.raises(DataError) as caught:
        list(loader)
    assert len(caught.value.problems) == 1 and "empty.jpg: unreadable or corrupt image" in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]


@pytest.mark.slow
def test_empty_or_truncated_eval_image_is_one_line_from_infer_with_workers(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    data = copy_data(dataset, tmp_path)
    victim = first_eval_image(data)
    victim.write_bytes(b"")
    code, err = cli(infer.main, "--data_dir", data, "--log_dir", log_dir, "--run", name, "--num_workers", "1",
                    "--out", tmp_path / "s.csv", capsys=capsys)
    line = one_line(err)
    assert code == 1 and victim.name in line and "unreadable or corrupt image" in line
    assert len(err.splitlines()) < 10
    good = (dataset / "eval" / "images" / victim.name).read_bytes()
    victim.write_bytes(good[: len(good) // 2])
    code, err = cli(infer.main, "--data_dir", data, "--log_dir", log_dir, "--run", name, "--num_workers", "2",
                    "--out", tmp_path / "s.csv", capsys=capsys)
    assert code == 1 and victim.name in one_line(err) and "truncated" in err


@pytest.mark.slow
def test_truncated_training_image_stops_training_naming_it(dataset, tmp_path, capsys):
    data = copy_data(dataset, tmp_path)
    victim = next(p for p in (data / "train" / "images").rglob("mask2.*") if p.suffix in (".jpg", ".jpeg"))
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])
    code, err = cli(train.main, "--data_dir", data, "--log_dir", tmp_path / "logs", "--name", "t", *TINY,
                    "--epochs", "1", "--fold", "0", capsys=capsys)
    assert code == 1 and str(victim) in one_line(err) and "truncated JPEG" in err


def test_huge_image_is_refused_from_its_header(tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(path)  # 81 MP in about 10 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match="9000x9000 is 81,000,000 pixels, more than max_image_pixels 50,000,000"):
        FileImages([path])[0]
    assert FileImages([path], max_pixels=10**8)[0].shape == (9000, 9000, 3)  # the limit is configurable
    from src.data.images import verify_image

    assert "refused" in verify_image(path) or "too many pixels" in verify_image(path)


# --- checkpoints -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_damaged_checkpoints_give_one_line_with_what_to_do(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    run = RunDir(logs, name)
    blob = run.checkpoint(0, "best_f1").read_bytes()
    run.checkpoint(0, "best_f1").write_bytes(blob[: len(blob) // 3])
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, capsys=capsys)
    line = one_line(err)
    assert code == 1 and "best_f1.pt: unreadable or truncated checkpoint" in line and "another --checkpoint" in line

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Payload()}, run.checkpoint(1, "best_f1"))
    run.checkpoint(0, "best_f1").write_bytes(blob)
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", name, capsys=capsys)
    line = one_line(err)
    assert "holds objects other than tensors" in line and "for safety" in line and "weights_only" not in err
    assert not (tmp_path / "pwned").exists()

    last = run.last(1).read_bytes()
    run.last(1).write_bytes(last[:100])
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--resume",
                    capsys=capsys)
    assert code == 1 and "last.pt: unreadable or truncated checkpoint" in one_line(err) and "delete it" in err


@pytest.mark.slow
def test_stale_temp_files_of_a_killed_writer_are_removed_on_resume(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = RunDir(logs, name).fold(0) / f".last.pt.{dead}.tmp"
    live = RunDir(logs, name).fold(0) / f".best_f1.pt.{os.getpid()}.tmp"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--resume",
               capsys=capsys)[0] == 0
    assert not stale.exists() and live.exists()  # only the dead writer's file goes


def test_atomic_writes_fsync_and_report_a_full_disk(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    atomic.save_text("one", tmp_path / "a.txt")
    assert len(synced) == 2  # the file, then its folder

    def full(data, tmp):
        with open(tmp, "wb") as f:
            f.write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(atomic.NoSpace, match=f"no space left on device while writing {tmp_path / 'last.pt'}; no "):
        atomic.save_torch({"w": torch.ones(2)}, tmp_path / "last.pt")
    monkeypatch.undo()
    atomic.save_torch({"w": torch.ones(2)}, tmp_path / "last.pt")
    monkeypatch.setattr(atomic, "write_bytes", full)
    with pytest.raises(atomic.NoSpace, match="the previous last.pt is intact"):
        atomic.save_torch({"w": torch.zeros(2)}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "last.pt"]
    assert torch.equal(torch.load(tmp_path / "last.pt", weights_only=True)["w"], torch.ones(2))


@pytest.mark.slow  # subprocesses or a real image decode: seconds each
def test_disk_cache_checks_free_space_first(dataset, tmp_path, monkeypatch):
    paths = list(load_train(dataset)["path"][:4])
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(atomic.NoSpace, match=r"need 0.00\d* GB, have 0.00 GB"):
        cache.build_cache("disk", paths, (64, 48), "none", tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


# --- folds trained side by side ----------------------------------------------------------------------------

def start(args, log):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_folds_trained_at_once_on_a_new_run_keep_every_row(dataset, tmp_path):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "par", *TINY, "--n_folds", "3", "--epochs", "2",
            "--resume"]
    procs = [start([*args, "--fold", k], tmp_path / f"{k}.log") for k in (1, 2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [(tmp_path / f"{k}.log").read_text()[-2000:]
                                                            for k in (1, 2)]
    metrics = pd.read_csv(tmp_path / "par" / "metrics.csv")
    assert sorted(zip(metrics["fold"], metrics["epoch"])) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert sorted(pd.read_csv(tmp_path / "par" / "folds.csv")["fold"].unique()) == [0, 1, 2]

    # a third process with other settings is refused, naming the keys
    proc = subprocess.run([sys.executable, "train.py", *map(str, args), "--fold", "0", "--lr", "0.5"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "lr (saved 0.001, now 0.5)" in proc.stderr


@pytest.mark.slow
def test_a_second_trainer_of_the_same_fold_is_refused_naming_the_first(dataset, tmp_path):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "same", *TINY, "--epochs", "500", "--early_stop_patience", "500", "--fold", "0",
            "--resume"]
    first = start(args, tmp_path / "first.log")
    lock = tmp_path / ".same.fold0.lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    try:
        proc = subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        wipe = subprocess.run([sys.executable, "train.py", *map(str, args[:-1]), "--overwrite"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert proc.returncode == 1 and f"fold 0 of run same is held by process {first.pid}" in proc.stderr
    assert wipe.returncode == 1 and "is held by process" in wipe.stderr  # --overwrite waits for no trainer
    assert (tmp_path / "same" / "config.yaml").is_file()


# --- the folds belong to the run ------------------------------------------------------------------------------

@pytest.mark.slow
def test_resume_reuses_the_saved_folds_whatever_the_seed_says(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "f", *TINY, "--epochs", "1"]
    assert cli(train.main, *args, "--fold", "0", capsys=capsys)[0] == 0
    assert cli(train.main, *args, "--fold", "1", "--seed", "7", "--resume", capsys=capsys)[0] == 0
    oof = pd.concat(pd.read_csv(RunDir(tmp_path, "f").oof(k)) for k in (0, 1))
    assert oof["path"].is_unique and len(oof) == 168  # each image out of fold exactly once

    code, err = cli(train.main, *args, "--fold", "1", "--age_filter", "58", "--resume", capsys=capsys)
    assert code == 2 and "age_filter (saved 59, now 58)" in one_line(err)

    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.drop(index=[3]).to_csv(data / "train" / "train.csv", index=False)
    code, err = cli(train.main, *args[2:], "--data_dir", data, "--fold", "1", "--resume", capsys=capsys)
    assert code == 1 and f"1 people removed ({people['id'][3]})" in one_line(err)


# --- non-finite numbers --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_non_finite_validation_fails_the_fold_and_infer_refuses_nan(dataset, tmp_path, capsys, monkeypatch):
    from src.engine import trainer

    real = trainer.predict

    def nan_logits(*a, **k):
        idx, logits = real(*a, **k)
        return idx, logits * float("nan")

    monkeypatch.setattr(trainer, "predict", nan_logits)
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "n", *TINY, "--fold", "0",
                    capsys=capsys)
    assert code == 1 and "fold 0 epoch 0: the validation loss is nan" in one_line(err)
    run = RunDir(tmp_path, "n")
    assert not run.last(0).exists() and not run.checkpoint(0, "best_f1").exists()
    monkeypatch.undo()

    assert cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "ok", *TINY, "--fold", "0",
               "--epochs", "1", capsys=capsys)[0] == 0
    best = RunDir(tmp_path, "ok").checkpoint(0, "best_f1")
    state = torch.load(best, weights_only=True)
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, best)
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", tmp_path, "--run", "ok", capsys=capsys)
    assert code == 1 and "run ok fold 0" in one_line(err) and "non-finite" in err
    assert not (tmp_path / "ok" / "submission.csv").exists()


def test_generated_data_for_these_tests_has_three_people_in_its_smallest_stratum(tmp_path):
    d = make_data(tmp_path / "d")
    assert len(load_train(d, n_folds=3)) == 168
    assert np.isin(load_train(d, n_folds=3)["fold"], [0, 1, 2]).all()


def test_decompression_bomb_warning_is_a_problem_in_check_data(tmp_path, monkeypatch):
    from PIL import Image

    from src.data.images import verify_image

    path = tmp_path / "wide.png"
    Image.new("L", (400, 300)).save(path)
    assert verify_image(path) is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # PIL warns above this, errors above twice it
    assert "too many pixels to decode safely" in verify_image(path)


@pytest.mark.slow
def test_pseudo_round_checks_before_it_claims_and_never_overwrites_its_teacher(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    args = ["--data_dir", dataset, "--log_dir", logs, *TINY, "--run", name]
    code, err = cli(pseudo_train.main, *args, "--name", name, "--overwrite", capsys=capsys)
    assert code == 2 and "is also a teacher run" in one_line(err) and RunDir(logs, name).exists
    RunDir(logs, "student").claim(False, False)
    RunDir(logs, "student").config.write_text("lr: 0.001\n")
    code, err = cli(pseudo_train.main, *args[2:], "--data_dir", tmp_path / "typo", "--name", "student", "--overwrite",
                    capsys=capsys)
    assert code == 1 and "data_dir not found" in one_line(err) and RunDir(logs, "student").config.is_file()


@pytest.mark.slow
def test_a_fold_gets_the_same_weights_alone_or_after_other_folds(dataset, tmp_path, capsys):
    base = ["--data_dir", dataset, *TINY, "--epochs", "1"]
    assert cli(train.main, *base, "--log_dir", tmp_path / "a", "--name", "all", capsys=capsys)[0] == 0
    assert cli(train.main, *base, "--log_dir", tmp_path / "b", "--name", "one", "--fold", "1", capsys=capsys)[0] == 0
    together = pd.read_csv(RunDir(tmp_path / "a", "all").oof(1))
    alone = pd.read_csv(RunDir(tmp_path / "b", "one").oof(1))
    from src.labels import PROB_COLUMNS

    assert np.allclose(together[PROB_COLUMNS].to_numpy(), alone[PROB_COLUMNS].to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_resume_with_fewer_epochs_finishes_and_onecycle_length_is_fixed(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, "--fold", "0"]
    assert cli(train.main, *args, capsys=capsys)[0] == 0  # 2 epochs
    from src.checkpoint import FoldState

    state = FoldState.load(RunDir(tmp_path, "r").last(0))
    state.finished = False
    state.save(RunDir(tmp_path, "r").last(0))
    assert cli(train.main, *args, "--epochs", "1", "--resume", capsys=capsys)[0] == 0
    assert FoldState.load(RunDir(tmp_path, "r").last(0)).finished
    one = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "oc", *TINY, "--fold", "0", "--scheduler",
           "onecycle", "--epochs", "1"]
    assert cli(train.main, *one, capsys=capsys)[0] == 0
    code, err = cli(train.main, *one[:-2], "--epochs", "3", "--resume", capsys=capsys)
    assert code == 2 and "epochs (saved 1, now 3)" in one_line(err)


def test_odd_names_and_jpeg_trailers(tmp_path):
    from src.data.images import image_header, relative_name_problem

    assert "NUL" in relative_name_problem("a\x00b")
    import cv2

    ok, jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    data = jpg.tobytes()
    assert image_header(data + b"SAMSUNG-TRAILER" * 100, "x.jpg", 10**8) is None  # data after the end marker
    assert "truncated JPEG" in image_header(data[: len(data) // 2], "x.jpg", 10**8)


def test_pseudo_csv_rows_are_checked(tmp_path, dataset):
    from src.data.tables import load_pseudo

    img = first_eval_image(dataset)
    bad = tmp_path / "p.csv"
    bad.write_text(f"path,label,confidence\n{img},3.5,0.9\n{img},4,1.5\n")
    with pytest.raises(DataError) as e:
        load_pseudo(str(bad))
    assert e.value.problems == [f"{bad} row 2: label '3.5' is not a class 0..17",
                                f"{bad} row 3: confidence '1.5' is not a number in [0, 1]"]
