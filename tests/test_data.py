import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.helpers import ROOT, make_data, run_py
from src.errors import DataError
from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.check import check_data
from src.data.tables import load_eval, load_train
from src.config.schema import TrainConfig as Config

CORRECTIONS = str(ROOT / "corrections.csv")


def test_corrections_fix_exactly_the_listed_ids(dataset):
    raw = load_train(dataset, "none", 60, 2, 0)
    fixed = load_train(dataset, CORRECTIONS, 60, 2, 0)
    listed = set(pd.read_csv(CORRECTIONS, dtype=str)["id"])
    changed = set(raw.loc[(raw["label"] != fixed["label"]).to_numpy(), "person_id"])
    present = listed & set(raw["person_id"])
    assert changed == present and len(present) == 3
    male = fixed[fixed["person_id"] == "006359"]
    assert (male["gender"] == 0).all() and (raw.loc[male.index, "gender"] == 1).all()
    swap = fixed[fixed["person_id"] == "000020"].set_index("photo")
    raw_swap = raw[raw["person_id"] == "000020"].set_index("photo")
    assert swap.loc["incorrect_mask", "mask"] == 2 and swap.loc["normal", "mask"] == 1
    assert raw_swap.loc["incorrect_mask", "mask"] == 1 and raw_swap.loc["normal", "mask"] == 2
    assert (swap.loc[[f"mask{i}" for i in range(1, 6)], "mask"] == 0).all()


def test_unknown_fix_in_corrections_file_is_refused(dataset, tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("id,fix\n000020,make_older\n")
    with pytest.raises(DataError, match="make_older.*gender_male"):
        load_train(dataset, str(bad))


def test_folds_group_persons_and_balance_strata(tmp_path):
    data = make_data(tmp_path / "d", train_people=200, eval_people=1, size="32x40")
    table = load_train(data, CORRECTIONS, 59, 4, seed=1)
    assert (table.groupby("person_id")["fold"].nunique() == 1).all()
    assert set(table["fold"]) == {0, 1, 2, 3}
    people = table.drop_duplicates("person_id")
    sizes = people["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 3
    female_share = people.groupby("fold")["gender"].mean()
    assert female_share.max() - female_share.min() < 0.25
    again = load_train(data, CORRECTIONS, 59, 4, seed=1)
    assert (again["fold"] == table["fold"]).all()
    other = load_train(data, CORRECTIONS, 59, 4, seed=2)
    assert (other["fold"] != table["fold"]).any()


def test_dataset_returns_rgb_uint8_label_and_index(dataset):
    table = load_train(dataset, "none")
    ds = FaceDataset(FileImages(table["path"][:3]), table["label"][:3])
    img, label, idx = ds[2]
    assert img.dtype == np.uint8 and img.shape == (128, 96, 3) and idx == 2 and label == table["label"][2]
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    path = dataset.parent / "red.png"
    import cv2

    cv2.imwrite(str(path), red[..., ::-1])
    assert FileImages([path])[0][0, 0].tolist() == [255, 0, 0]


def test_eval_table_keeps_info_order(dataset):
    info = pd.read_csv(dataset / "eval" / "info.csv")
    table = load_eval(dataset)
    assert list(table["ImageID"]) == list(info["ImageID"])


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
