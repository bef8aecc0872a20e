"""src/data/tables.py: the train, eval, unlabeled and pseudo tables: corrections, labels, folds, untrusted rows."""
import os
import shutil
import time

import pandas as pd
import pytest

import infer
import pseudo_train
import train
from src.data.images import read_rgb
from src.data.tables import add_labels, load_eval, load_train, load_unlabeled
from src.errors import DataError
from tests.helpers import CORRECTIONS, TINY, cli, copy_data, first_eval_image, make_data, one_line


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
        load_train(dataset, str(bad), 60, None, 42)


def test_age_filter_changes_training_labels_only():
    images = pd.DataFrame({"mask": [0, 0, 2], "gender": [1, 1, 0], "age": [58, 59, 60]})
    add_labels(images, age_filter=59)
    assert list(images["label"]) == [4, 4, 14]  # true bands: 58 and 59 are 30-59
    assert list(images["train_label"]) == [4, 5, 14]  # training: 59 counts as 60+


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


def test_a_stratum_smaller_than_the_folds_is_a_warning_naming_it(dataset, caplog):
    people = load_train(dataset, "none", 60, None, 42).groupby("person_id").first()
    bands = pd.Series(people["gender"] * 3 + people["age"].map(lambda a: 0 if a < 30 else 1 if a < 60 else 2))
    small = {s: m for s, m in bands.value_counts().items() if m < 4}
    assert small  # the fixture's 24 people leave some stratum under 4 people
    report = {}
    table = load_train(dataset, "none", 60, 4, 42, report=report)
    assert sorted(table["fold"].unique()) == [0, 1, 2, 3]
    expected = sorted(f"stratum {('male', 'female')[s // 3]}, age {('<30', '30-59', '60+')[s % 3]} has {m} people "
                      f"for 4 folds: {4 - m} fold(s) validate without it" for s, m in small.items())
    assert sorted(report["warnings"]) == expected
    assert all(f"warning: {w}" in caplog.text for w in expected)


def test_n_folds_may_not_exceed_the_people(dataset):
    with pytest.raises(DataError, match="n_folds 25 exceeds the 24 people of the data.*use --n_folds 24 or fewer"):
        load_train(dataset, "none", 60, 25, 42)
    assert load_train(dataset, "none", 60, 24, 42)["fold"].nunique() == 24  # one person per fold still splits


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
    assert len(load_train(moved, "none", 60, None, 42)) == 168


def test_two_ids_sharing_one_folder_is_an_error(dataset, tmp_path):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[1, "path"] = people.loc[0, "path"]
    people.to_csv(data / "train" / "train.csv", index=False)
    with pytest.raises(DataError, match=f"row 3 .*is also the folder of id {people.loc[0, 'id']}"):
        load_train(data, "none", 60, None, 42)


@pytest.mark.parametrize("age, message", [("²", "is not a whole number"), ("-3", "is out of range 0..120"),
                                          ("200", "is out of range 0..120"), ("4.5", "is not a whole number"),
                                          ("", "is not a whole number")])
def test_ages_are_ascii_whole_numbers_in_range(dataset, tmp_path, age, message):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[4, "age"] = age
    people.to_csv(data / "train" / "train.csv", index=False)
    with pytest.raises(DataError, match=f"row 6 .*age {age!r} {message}"):
        load_train(data, "none", 60, None, 42)


def test_age_zero_and_120_are_accepted(dataset, tmp_path):
    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.loc[[0, 1], "age"] = ["0", "120"]
    people.to_csv(data / "train" / "train.csv", index=False)
    assert set(load_train(data, "none", 60, None, 42)["age"]) >= {0, 120}


def test_eval_table_keeps_info_order(dataset):
    info = pd.read_csv(dataset / "eval" / "info.csv")
    table = load_eval(dataset)
    assert list(table["ImageID"]) == list(info["ImageID"])


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


def test_unlabeled_dir_lists_images_and_skips_junk(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.png", "._a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    table = load_unlabeled("unused", str(tmp_path))
    assert list(table["ImageID"]) == ["a.jpg", "sub/b.png"]
    with pytest.raises(DataError, match="unlabeled_dir not found"):
        load_unlabeled("unused", str(tmp_path / "none"))


def test_unlabeled_dir_entries_that_resolve_outside_it_are_refused(tmp_path):
    from src.data.tables import load_unlabeled

    (tmp_path / "unl").mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (tmp_path / "unl" / "a.jpg").write_bytes(b"x")
    (tmp_path / "unl" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DataError, match="link.jpg: resolves outside unlabeled_dir"):
        load_unlabeled("unused", str(tmp_path / "unl"))


def test_pseudo_csv_rows_are_checked(tmp_path, dataset):
    from src.data.tables import load_pseudo

    img = first_eval_image(dataset)
    bad = tmp_path / "p.csv"
    bad.write_text(f"path,label,confidence\n{img},3.5,0.9\n{img},4,1.5\n")
    with pytest.raises(DataError) as e:
        load_pseudo(str(bad))
    assert e.value.problems == [f"{bad} row 2: label '3.5' is not a class 0..17",
                                f"{bad} row 3: confidence '1.5' is not a number in [0, 1]"]


def test_a_named_pipe_as_a_photo_is_a_problem_not_a_hang(dataset, tmp_path, capsys):
    data = copy_data(dataset, tmp_path)
    folder = next((data / "train" / "images").iterdir())
    photo = next(folder.glob("mask3.*"))
    photo.unlink()
    os.mkfifo(photo)
    started = time.monotonic()
    code, err = cli(train.main, "--data_dir", data, "--check_data", "--n_folds", "2", capsys=capsys)
    assert code == 1 and f"problem: {photo}: is a named pipe, not a regular file" in err
    code, err = cli(train.main, "--data_dir", data, "--log_dir", tmp_path / "logs", "--name", "p", *TINY,
                    capsys=capsys)
    assert code == 1 and f"{photo}: is a named pipe, not a regular file" in err
    assert time.monotonic() - started < 120 and not (tmp_path / "logs" / "p").exists()
    with pytest.raises(DataError, match="is a named pipe"):
        read_rgb(photo)


def test_an_image_id_with_hidden_whitespace_is_shown_quoted(dataset, tmp_path):
    data = copy_data(dataset, tmp_path)
    info = pd.read_csv(data / "eval" / "info.csv", dtype=str)
    info.loc[0, "ImageID"] += " "
    info.to_csv(data / "eval" / "info.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_eval(data)
    assert f"image '{data / 'eval' / 'images' / info.loc[0, 'ImageID']}' not found" in caught.value.problems[0]


def test_a_photo_symlinked_out_of_the_data_is_refused_unopened(dataset, tmp_path, capsys):
    """A person folder inside the data may still hold a photo that links out of it: it is named, never read."""
    data = copy_data(dataset, tmp_path)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(first_eval_image(dataset).read_bytes())  # a real JPEG: it would train if it were read
    folder = next((data / "train" / "images").iterdir())
    photo = next(folder.glob("mask1.*"))
    photo.unlink()
    photo.symlink_to(outside)
    code, err = cli(train.main, "--data_dir", data, "--check_data", "--n_folds", "2", capsys=capsys)
    assert code == 1 and f"{photo}: resolves outside {data / 'train' / 'images'}" in err and "missing" not in err
    inside = next(p for p in (data / "train" / "images").iterdir() if p != folder)
    photo.unlink()
    photo.symlink_to(next(inside.glob("mask2.*")))  # a link within the data is the data's own business
    assert len(load_train(data, "none", 60, None, 42)) == 168


def test_a_symlink_loop_among_the_photos_is_a_problem_not_a_crash(dataset, tmp_path, capsys):
    data = copy_data(dataset, tmp_path)
    folder = next((data / "train" / "images").iterdir())
    photo = next(folder.glob("mask4.*"))
    photo.unlink()
    os.symlink(photo.name, photo)  # links to itself
    code, err = cli(train.main, "--data_dir", data, "--check_data", "--n_folds", "2", capsys=capsys)
    assert code == 1 and str(photo) in err and "Traceback" not in err


def test_corrections_whose_ids_are_absent_are_one_summary_line(dataset, caplog):
    caplog.set_level("INFO", logger="maskcls")
    load_train(dataset, CORRECTIONS, 60, None, 42)
    lines = [r.getMessage() for r in caplog.records]
    applied = [m for m in lines if m.startswith("correction ")]
    assert not [m for m in lines if "not in this dataset" in m] and 0 < len(applied) < 11
    assert [m for m in lines if m.startswith("corrections:")] == [
        f"corrections: {len(applied)} of 11 apply to this data ({CORRECTIONS}); the other ids are not in it"]
