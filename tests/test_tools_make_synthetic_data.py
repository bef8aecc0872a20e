"""tools/make_synthetic_data.py: layout, quirks, determinism and injected label noise."""
import hashlib

import numpy as np
import pandas as pd

from src.data.tables import load_train
from src.labels import PHOTO_NAMES, age_band
from tests.helpers import make_data, run_py
from tools.make_synthetic_data import SWAPPED_INCORRECT_NORMAL, TRULY_FEMALE_LABELLED_MALE, TRULY_MALE_LABELLED_FEMALE


def digest(folder):
    h = hashlib.sha1()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_layout_counts_and_quirks(dataset):
    train = pd.read_csv(dataset / "train" / "train.csv", dtype=str)
    assert list(train.columns) == ["id", "gender", "race", "age", "path"]
    assert len(train) == 24 and train["id"].is_unique
    assert (train["path"] == train["id"] + "_" + train["gender"] + "_Asian_" + train["age"]).all()
    exts = set()
    for folder in train["path"]:
        files = [f for f in (dataset / "train" / "images" / folder).iterdir() if not f.name.startswith(".")]
        assert sorted(f.stem for f in files) == sorted(PHOTO_NAMES)
        exts |= {f.suffix for f in files}
    assert len(exts) >= 2, "extensions should vary between folders"
    info = pd.read_csv(dataset / "eval" / "info.csv")
    answers = pd.read_csv(dataset / "eval_answers.csv")
    assert list(info.columns) == ["ImageID", "ans"] and (info["ans"] == 0).all() and len(info) == 4 * 7
    assert (answers["ImageID"] == info["ImageID"]).all() and answers["ans"].between(0, 17).all()
    assert all((dataset / "eval" / "images" / i).is_file() and len(i) == 44 for i in info["ImageID"])
    # the known-error ids are present, written with the wrong gender
    row = train.set_index("id")
    assert row.loc[TRULY_MALE_LABELLED_FEMALE[0], "gender"] == "female"
    assert row.loc[TRULY_FEMALE_LABELLED_MALE[0], "gender"] == "male"
    assert SWAPPED_INCORRECT_NORMAL[0] in row.index


def test_junk_files_and_real_distributions(tmp_path):
    out = make_data(tmp_path / "big", train_people=120, eval_people=1, size="48x64")
    train = pd.read_csv(out / "train" / "train.csv", dtype=str)
    junk = [f for f in (out / "train" / "images").rglob(".*")]
    assert any(f.name.startswith("._") for f in junk)
    assert set(TRULY_MALE_LABELLED_FEMALE + TRULY_FEMALE_LABELLED_MALE + SWAPPED_INCORRECT_NORMAL) <= set(train["id"])
    ages = train["age"].astype(int)
    assert (ages[ages >= 60] == 60).all()
    assert 0.45 < (train["gender"] == "female").mean() < 0.77
    assert 0.3 < (ages < 30).mean() < 0.65


def test_deterministic_for_a_seed(tmp_path):
    a = make_data(tmp_path / "a", train_people=5, eval_people=2, seed=7, size="48x64")
    b = make_data(tmp_path / "b", train_people=5, eval_people=2, seed=7, size="48x64")
    c = make_data(tmp_path / "c", train_people=5, eval_people=2, seed=8, size="48x64")
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_label_noise_writes_wrong_labels_and_their_truth(tmp_path):
    clean = make_data(tmp_path / "clean", train_people=30, eval_people=1, seed=5, size="48x64")
    proc = run_py("-m", "tools.make_synthetic_data", "--out", tmp_path / "noisy", "--train_people", 30,
                  "--eval_people", 1, "--seed", 5, "--size", "48x64", "--label_noise", 0.2)
    assert "wrote 210 train" in proc.stdout and not (clean / "label_noise.csv").exists()
    truth = pd.read_csv(tmp_path / "noisy" / "label_noise.csv", dtype=str).set_index("id")
    assert truth["kind"].value_counts().to_dict() == {"gender": 2, "age": 2, "swap": 2}
    noisy = tmp_path / "noisy"
    before, after = (pd.read_csv(d / "train" / "train.csv", dtype=str).set_index("id") for d in (clean, noisy))
    for pid, row in truth.iterrows():
        if row["kind"] == "gender":
            assert after.loc[pid, "gender"] == row["given"] != before.loc[pid, "gender"] == row["true"]
        elif row["kind"] == "age":
            given, true = int(row["given"]), int(row["true"])
            assert after.loc[pid, "age"] == row["given"] and before.loc[pid, "age"] == row["true"]
            assert age_band(given) != age_band(true) and abs(given - true) >= 6
        else:  # the labels stay; the photos named incorrect_mask and normal show each other's state
            assert (after.loc[pid] == before.loc[pid]).all()
    untouched = after.index.difference(truth.index)
    assert (after.loc[untouched] == before.loc[untouched]).all().all()
    photos = [f"{folder}/{f.name}" for folder in after.loc[untouched, "path"]
              for f in (clean / "train" / "images" / folder).iterdir()]
    # a separate random stream: everyone else is drawn exactly as without noise
    assert all((clean / "train" / "images" / p).read_bytes() == (noisy / "train" / "images" / p).read_bytes()
               for p in photos)
    bad = run_py("-m", "tools.make_synthetic_data", "--out", tmp_path / "x", "--label_noise", 1.5, check=False)
    assert bad.returncode == 2 and "--label_noise must be from 0 to 1" in bad.stderr


def test_generated_data_for_these_tests_has_three_people_in_its_smallest_stratum(tmp_path):
    d = make_data(tmp_path / "d")
    assert len(load_train(d, "none", 60, 3, 42)) == 168
    assert np.isin(load_train(d, "none", 60, 3, 42)["fold"], [0, 1, 2]).all()
