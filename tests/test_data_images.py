"""src/data/images.py: untrusted images: empty, truncated, huge, odd names."""
import cv2
import numpy as np
import pytest

import infer
import train
from src.data.images import FileImages, read_rgb
from src.errors import DataError
from tests.helpers import TINY, cli, copy_data, first_eval_image, one_line


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


def test_pils_own_pixel_limit_never_overrides_max_image_pixels(tmp_path, monkeypatch):
    """One limit, ours: PIL's own (a warning above its MAX_IMAGE_PIXELS, an error above twice it) neither refuses a
    photo under max_image_pixels nor decides for one over it."""
    from PIL import Image

    from src.data.images import image_header, verify_image

    path = tmp_path / "wide.png"
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # PIL would warn above this and refuse above twice it
    assert verify_image(path) is None and FileImages([path])[0].shape == (300, 400, 3)
    assert "400x300 is 120,000 pixels, more than max_image_pixels 100,000" in verify_image(path, max_pixels=100_000)
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # 400 MP, far over PIL's limit: read from its header only
    assert image_header(huge.read_bytes(), huge, 10**9) is None
    assert "20000x20000 is 400,000,000 pixels, more than max_image_pixels 50,000,000" in verify_image(huge)


def test_odd_names_and_jpeg_trailers(tmp_path):
    from src.data.images import image_header, relative_name_problem

    assert "NUL" in relative_name_problem("a\x00b")
    import cv2

    ok, jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    data = jpg.tobytes()
    assert image_header(data + b"SAMSUNG-TRAILER" * 100, "x.jpg", 10**8) is None  # data after the end marker
    assert "truncated JPEG" in image_header(data[: len(data) // 2], "x.jpg", 10**8)


def test_a_jpeg_decodes_at_a_fraction_of_its_size_when_asked(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert read_rgb(tmp_path / "a.jpg").shape == (64, 48, 3)
    assert read_rgb(tmp_path / "a.jpg", reduce=4).shape == (16, 12, 3)
    assert read_rgb(tmp_path / "a.png", reduce=4).shape == (16, 12, 3)
