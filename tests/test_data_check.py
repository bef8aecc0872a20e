"""src/data/check.py: --check_data names every problem of a damaged dataset."""
import json
import shutil

import pandas as pd
import pytest

from src.config.schema import TrainConfig as Config
from src.data.check import check_data
from tests.helpers import CORRECTIONS, run_py


def broken_copy(dataset, tmp_path):
    dst = tmp_path / "broken"
    shutil.copytree(dataset, dst)
    return dst


def check(data) -> dict:
    return check_data(data, CORRECTIONS, age_filter=59, n_folds=2, seed=42, max_pixels=Config().max_image_pixels)


def first_person(data):
    return next(p for p in sorted((data / "train" / "images").iterdir()) if not p.name.startswith("."))


@pytest.mark.parametrize("damage, expected", [
    (lambda d: shutil.rmtree(d / "train"), "train.csv: file not found"),
    (lambda d: (d / "eval" / "info.csv").unlink(), "info.csv: file not found"),
    (lambda d: pd.read_csv(d / "train" / "train.csv").drop(columns="age").to_csv(d / "train" / "train.csv", index=False),
     "missing column\\(s\\) age"),
    (lambda d: d.joinpath("train", "train.csv").write_text(
        d.joinpath("train", "train.csv").read_text().replace(",Asian,", ",Asian,x", 1)), "is not a whole number"),
    (lambda d: d.joinpath("train", "train.csv").write_text(
        d.joinpath("train", "train.csv").read_text().replace("female,", "femme,", 1)), "'femme' is not one of"),
    (lambda d: shutil.rmtree(first_person(d)), "person folder listed in train.csv .* not found"),
    (lambda d: next(first_person(d).glob("normal.*")).unlink(), "missing normal"),
    (lambda d: d.joinpath("train", "train.csv").write_text(
        d.joinpath("train", "train.csv").read_text() + d.joinpath("train", "train.csv").read_text().splitlines()[1]
        + "\n"), "appears 2 times"),
    (lambda d: next(first_person(d).glob("mask2.*")).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg"),
     "mask2.* unreadable or corrupt image"),
    (lambda d: next((d / "eval" / "images").iterdir()).unlink(), "info.csv row .*: image .* not found"),
])
def test_bad_data_is_named(dataset, tmp_path, damage, expected):
    data = broken_copy(dataset, tmp_path)
    damage(data)
    problems = "\n".join(check(data)["problems"])
    assert problems, "damage went unnoticed"
    import re

    assert re.search(expected, problems), problems


def test_truncated_jpeg_is_caught(dataset, tmp_path):
    data = broken_copy(dataset, tmp_path)
    victim = next(p for p in (data / "eval" / "images").iterdir())
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert any(victim.name in p for p in check(data)["problems"])


def test_missing_data_dir(tmp_path):
    assert "data_dir not found" in check(tmp_path / "nowhere")["problems"][0]


@pytest.mark.slow  # subprocesses or a real image decode: seconds each
def test_check_data_cli_summary_and_failure(dataset, tmp_path):
    ok = run_py("train.py", "--data_dir", dataset, "--check_data", "--n_folds", "2")
    report = json.loads(ok.stdout)
    assert report["people"] == 24 and report["train_images"] == 168 and report["eval_images"] == 28
    assert report["problems"] == [] and report["folds_disjoint"]
    assert sum(f["images"] for f in report["folds"]) == 168
    assert set(report["per_class"]) == {"raw", "corrected", "train_labels"}
    assert sum(report["per_class"]["corrected"].values()) == 168
    assert len(report["corrections"]) == 11
    data = broken_copy(dataset, tmp_path)
    victim = next(first_person(data).glob("normal.*"))
    victim.unlink()
    bad = run_py("train.py", "--data_dir", data, "--check_data", check=False)
    assert bad.returncode == 1 and str(victim.parent) in bad.stderr and "normal" in bad.stderr


def test_training_refuses_bad_data_before_starting(dataset, tmp_path):
    data = broken_copy(dataset, tmp_path)
    next(first_person(data).glob("mask3.*")).unlink()
    proc = run_py("train.py", "--data_dir", data, "--name", "x", "--log_dir", tmp_path / "logs", check=False)
    assert proc.returncode == 1 and "missing mask3" in proc.stderr
    assert not (tmp_path / "logs" / "x").exists()
