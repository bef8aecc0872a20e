"""src/predict/photos.py (predict.py): any photos, one row each; bad files are error rows, or stop --strict."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import predict
from src.data.images import read_rgb
from src.decision import decide
from src.labels import CLASS_NAMES, PROB_COLUMNS
from src.predict.photos import COLUMNS, TASK_COLUMNS, collect
from tests.helpers import applied_offsets, cli, first_eval_image, one_line


def test_collect_finds_files_folders_and_globs_and_names_what_finds_nothing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.png", "a/.hidden.jpg", "a/b/notes.txt", "3.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = collect([str(tmp_path / "a"), str(tmp_path / "*.jpg"), str(tmp_path / "nope.jpg"),
                     str(tmp_path / "*.gif"), str(tmp_path / "3.jpg")])
    assert found == [(str(tmp_path / "a/1.jpg"), None), (str(tmp_path / "a/b/2.png"), None),
                     (str(tmp_path / "a/b/notes.txt"), None), (str(tmp_path / "3.jpg"), None),
                     (str(tmp_path / "nope.jpg"), "not found"), (str(tmp_path / "*.gif"), "matches no file")]


def mixed_folder(dataset, folder):
    """Photos of every kind PIL and the phone cameras make, and files that are not photos."""
    folder.mkdir()
    (folder / "sub").mkdir()
    face = Image.open(first_eval_image(dataset)).convert("RGB")
    face.save(folder / "face.png")
    face.save(folder / "face.jpg", quality=100)
    face.convert("L").save(folder / "sub" / "gray.png")
    face.convert("RGBA").save(folder / "sub" / "rgba.png")
    face.save(folder / "face.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the sensor stored it turned left
    face.rotate(90, expand=True).save(folder / "rotated.jpg", quality=100, exif=exif)
    (folder / "corrupt.jpg").write_bytes((folder / "face.jpg").read_bytes()[:400])
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".DS_Store").write_bytes(b"\0\0")
    return face


@pytest.mark.slow
def test_a_mixed_folder_gives_right_rows_and_error_rows(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    face = mixed_folder(dataset, tmp_path / "photos")
    before = sorted(os.listdir(tmp_path / "photos"))
    assert predict.main(["--log_dir", str(log_dir), "--run", name, str(tmp_path / "photos"), "--num_workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "photos")) == before  # without --out the rows go to stdout only
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, tmp_path / "photos", "--num_workers", "0",
                    "--out", tmp_path / "rows.csv", capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "rows.csv").read_text() == printed
    rows = pd.read_csv(tmp_path / "rows.csv", keep_default_na=False).set_index("path")
    assert list(rows.reset_index().columns) == COLUMNS
    p = {f: str(tmp_path / "photos" / f) for f in ("face.png", "face.jpg", "face.gif", "rotated.jpg", "sub/gray.png",
                                                     "sub/rgba.png", "corrupt.jpg", "notes.txt")}
    assert sorted(rows.index) == sorted(p.values())  # the hidden file is skipped
    good, bad = [p[f] for f in list(p)[:6]], [p["corrupt.jpg"], p["notes.txt"]]
    assert "corrupt.jpg: unreadable or corrupt image" in rows.loc[p["corrupt.jpg"], "error"]
    assert "notes.txt: unreadable or corrupt image" in rows.loc[p["notes.txt"], "error"]
    assert (rows.loc[bad, ["class", "mask", *PROB_COLUMNS]] == "").all().all()
    ok = rows.loc[good].astype({c: float for c in [*TASK_COLUMNS, *PROB_COLUMNS]})
    assert (ok["error"] == "").all()
    probs = ok[PROB_COLUMNS].to_numpy()
    offsets = applied_offsets(log_dir / name)
    assert np.allclose(probs.sum(1), 1, atol=1e-4) and (decide(probs, offsets) == ok["class"].astype(int)).all()
    names = [CLASS_NAMES[int(k)].split("/") for k in ok["class"]]
    assert [[m, g, a] for m, g, a in zip(ok["mask"], ok["gender"], ok["age"])] == names
    for task in ("mask", "gender", "age"):
        assert np.allclose(ok[[c for c in TASK_COLUMNS if c.startswith(f"p_{task}_")]].sum(axis=1), 1, atol=1e-4)
    # the same pixels give the same row, whatever the format; EXIF turns the rotated photo upright
    assert np.allclose(ok.loc[p["face.png"], PROB_COLUMNS], ok.loc[p["sub/rgba.png"], PROB_COLUMNS], atol=1e-6)
    assert np.allclose(ok.loc[p["face.png"], PROB_COLUMNS], ok.loc[p["face.gif"], PROB_COLUMNS], atol=0.05)
    upright = read_rgb(p["rotated.jpg"])
    assert upright.shape == np.asarray(face).shape
    assert np.abs(upright.astype(int) - np.asarray(face, dtype=int)).mean() < 2
    assert np.allclose(ok.loc[p["rotated.jpg"], PROB_COLUMNS], ok.loc[p["face.jpg"], PROB_COLUMNS], atol=0.02)
    gray = read_rgb(p["sub/gray.png"])
    assert gray.shape[2] == 3 and (gray[..., 0] == gray[..., 2]).all()


@pytest.mark.slow
def test_strict_stops_at_the_first_bad_photo_and_json_rows(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    mixed_folder(dataset, tmp_path / "photos")
    out = tmp_path / "rows.json"
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, tmp_path / "photos", "--strict", "--out", out,
                    "--format", "json", "--num_workers", "0", capsys=capsys)
    assert code == 1 and "corrupt.jpg: unreadable or corrupt image" in one_line(err) and not out.exists()
    big = tmp_path / "big.png"
    Image.new("RGB", (400, 300)).save(big)
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, first_eval_image(dataset), big,
                    tmp_path / "missing.jpg", "--max_image_pixels", 100_000, "--out", out, "--format", "json",
                    capsys=capsys)
    assert code == 0, err
    first, large, missing = json.loads(out.read_text())
    assert first["error"] is None and 0 <= first["class"] < 18 and len(first["probs"]) == 18
    assert set(first["tasks"]) == {"mask", "gender", "age"} and first["mask"] in first["tasks"]["mask"]
    assert large["class"] is None and "120,000 pixels, more than max_image_pixels 100,000" in large["error"]
    assert missing == {"path": str(tmp_path / "missing.jpg"), "class": None, "mask": None, "gender": None,
                       "age": None, "tasks": None, "probs": None, "error": "not found"}


@pytest.mark.slow
def test_out_is_never_a_photo_and_agrees_with_the_format(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    photo = tmp_path / "p.jpg"
    photo.write_bytes(first_eval_image(dataset).read_bytes())
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, photo, "--out", photo, capsys=capsys)
    assert code == 2 and "is one of the photos to predict" in one_line(err) and photo.read_bytes()[:2] == b"\xff\xd8"
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, photo, "--out", tmp_path / "x.json",
                    capsys=capsys)
    assert code == 2 and "ends in .json but --format is csv" in one_line(err)
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, capsys=capsys)
    assert code == 2 and "name the photos to predict" in one_line(err)


@pytest.mark.slow
def test_a_symlink_loop_or_a_read_only_out_is_one_line(trained_run, dataset, tmp_path, capsys):
    from tests.helpers import read_only

    log_dir, name = trained_run
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(first_eval_image(dataset).read_bytes())
    os.symlink("loop.jpg", folder / "loop.jpg")
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, folder, "--out", tmp_path / "p.csv",
                    capsys=capsys)
    rows = pd.read_csv(tmp_path / "p.csv")
    assert code == 0 and "Traceback" not in err and rows["error"].isna().tolist() == [True, False]
    shut = tmp_path / "shut"
    shut.mkdir()
    with read_only(shut):
        code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, folder, "--out", shut / "p.csv",
                        capsys=capsys)
    assert code == 1 and "Read-only file system" in one_line(err) and "predict" not in err.split("error:")[0]


@pytest.mark.slow
def test_predict_decides_each_photo_alone_whatever_group_says(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    folder = dataset / "eval" / "images"  # 28 photos of 4 people, but predict.py cannot know that
    code, err = cli(predict.main, "--log_dir", log_dir, "--run", name, folder, "--group", "people", "--out",
                    tmp_path / "a.csv", capsys=capsys)
    assert code == 0 and "group people: none (predict.py's photos are any photos" in err
    code, _ = cli(predict.main, "--log_dir", log_dir, "--run", name, folder, "--out", tmp_path / "b.csv",
                  capsys=capsys)
    assert code == 0 and (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.slow
def test_cam_maps_are_checked_before_predicting_and_never_cost_the_predictions(trained_run, dataset, tmp_path,
                                                                                monkeypatch, capsys):
    """A photo whose name is as long as the file system allows gets a picture under a shortened name with a digest;
    a folder where a picture goes is one line before any photo is predicted; a picture that cannot be written still
    leaves every prediction in --out."""
    import shutil

    from src.errors import FileSystemError
    from src.predict import engines
    from src.run import figures

    log_dir, name = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    long_name = photos / ("x" * 247 + ".jpg")  # 251 characters: its picture's name would pass 255
    shutil.copy(first_eval_image(dataset), long_name)
    shutil.copy(first_eval_image(dataset), photos / "a.jpg")
    maps, out = tmp_path / "maps", tmp_path / "rows.csv"
    args = ["--log_dir", log_dir, "--run", name, "--out", out, "--cam", maps, "--num_workers", "0", photos]
    code, err = cli(predict.main, *args, capsys=capsys)
    assert code == 0, err
    pictures = sorted(p.name for p in maps.iterdir())
    assert len(pictures) == 2 and pictures[0] == "0000_a.png" and pictures[1].startswith("0001_xxx")
    assert len(pictures[1].encode()) <= 255 and pictures[1][-13] == "-"  # cut, then a digest of the whole name
    assert len(pd.read_csv(out)) == 2

    out.unlink()
    shutil.rmtree(maps)
    (maps / "0000_a.png").mkdir(parents=True)
    real = engines.predict_batches
    monkeypatch.setattr(engines, "predict_batches", lambda *a, **k: pytest.fail("predicted before the check"))
    code, err = cli(predict.main, *args, capsys=capsys)
    assert code == 2 and "0000_a.png is a folder (or not a file) where a picture goes" in one_line(err)
    assert not out.exists()

    monkeypatch.setattr(engines, "predict_batches", real)
    (maps / "0000_a.png").rmdir()

    def full(image, path):
        raise FileSystemError(f"cannot write {path} (No space left on device); make that place writable")

    monkeypatch.setattr(figures, "save_rgb", full)
    code, err = cli(predict.main, *args, capsys=capsys)
    assert code == 1 and "No space left on device" in one_line(err)
    assert len(pd.read_csv(out)) == 2  # written before the maps
