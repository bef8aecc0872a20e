import hashlib

import pandas as pd

from tests.helpers import make_data
from src.labels import PHOTO_NAMES
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
