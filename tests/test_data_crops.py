"""Crops before the resize: the centre box, a detected face widened to the input's aspect, the fallback, the box
store in the cache and the image cache's key."""
import json
import os

import cv2
import numpy as np
import pytest
import skimage.data

from src.data import crops
from src.data.cache import cache_key
from src.data.crops import FaceStore, crop_boxes, widen
from src.data.images import FileImages, cut
from src.engine import builders
from tests.helpers import tiny_cfg

ASTRONAUT_FACE = (181, 62, 268, 172)


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def write(path, img):
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def astronaut(tmp_path):
    return write(tmp_path / "astronaut.png", skimage.data.astronaut())


def test_center_box_cuts_the_given_fractions_of_a_hand_made_image(tmp_path):
    img = np.zeros((200, 100, 3), np.uint8)
    img[40:160, 20:80] = (255, 0, 0)  # the box 0.2 0.2 0.8 0.8 is all red, everything outside black
    path = write(tmp_path / "a.png", img)
    found = crop_boxes("center", [path], [0.2, 0.2, 0.8, 0.8], 0.4, 0.5, tmp_path / "cache", 10**7)
    assert found.boxes.tolist() == [[0.2, 0.2, 0.8, 0.8]] and found.fallbacks == 0
    out = FileImages([path], None, boxes=found.boxes)[0]
    assert out.shape == (120, 60, 3) and (out == (255, 0, 0)).all()
    resized = FileImages([path], (30, 15), boxes=found.boxes)[0]
    assert resized.shape == (30, 15, 3) and (resized == (255, 0, 0)).all()
    assert crop_boxes("none", [path], [0.2, 0.2, 0.8, 0.8], 0.4, 0.5, tmp_path, 10**7).boxes is None


def test_cut_keeps_at_least_one_pixel():
    img = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    assert cut(img, [0.0, 0.0, 0.01, 0.01]).shape == (1, 1, 3)
    assert (cut(img, [0.5, 0.0, 1.0, 1.0]) == img[:, 5:]).all()


def test_widen_grows_by_the_margin_then_to_the_aspect_and_stays_inside_the_frame():
    # a 100x100 face at (150, 150) of a 400x600 frame, margin 0.25: 150x150, then 3:4 -> 150 wide, 200 tall
    assert widen((150, 150, 250, 250), (400, 600), 0.25, 0.75) == pytest.approx(
        [125 / 400, 100 / 600, 275 / 400, 300 / 600])
    # near the left edge the box shifts right instead of leaving the frame
    assert widen((0, 150, 100, 250), (400, 600), 0.25, 0.75) == pytest.approx(
        [0, 100 / 600, 150 / 400, 300 / 600])
    # a box that outgrows the frame shrinks to its width keeping the aspect (400 x 533.3), centred on the face
    box = widen((0, 0, 400, 600), (400, 600), 1.0, 0.75)
    assert box == pytest.approx([0, (300 - 800 / 3) / 600, 1, (300 + 800 / 3) / 600])


def test_detector_finds_the_astronaut_and_keeps_the_box_in_the_cache(astronaut, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    [entry] = FaceStore(cache).boxes([str(astronaut)], 10**7)
    assert entry["frame"] == [512, 512] and entry["p"] > 0.99
    assert iou(entry["box"], ASTRONAUT_FACE) > 0.7, entry
    assert json.loads((cache / crops.STORE).read_text())["images"][str(astronaut)]["box"] == entry["box"]

    def no_detection(paths, max_pixels):
        raise AssertionError(f"detected again: {paths}")

    monkeypatch.setattr(crops, "detect", no_detection)
    found = crop_boxes("face", [astronaut], [0.1, 0.1, 0.9, 0.9], 0.4, 0.75, cache, 10**7)
    assert found.fallbacks == 0
    expected = widen(entry["box"], (512, 512), 0.4, 0.75)
    assert found.boxes[0].tolist() == pytest.approx(expected)
    x0, y0, x1, y1 = np.asarray(found.boxes[0]) * 512
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.75)
    assert x0 < 181 and y0 < 62 and x1 > 268 and y1 > 172  # the margin widened it on every side


def test_a_touched_file_is_detected_again_and_a_damaged_store_is_rebuilt(astronaut, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    FaceStore(cache).boxes([str(astronaut)], 10**7)
    calls = []
    real = crops.detect
    monkeypatch.setattr(crops, "detect", lambda paths, m: calls.append(list(paths)) or real(paths, m))
    st = os.stat(astronaut)
    os.utime(astronaut, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    FaceStore(cache).boxes([str(astronaut)], 10**7)
    assert calls == [[str(astronaut)]]
    (cache / crops.STORE).write_text('{"detector": "x", "images": [1, 2]')
    [entry] = FaceStore(cache).boxes([str(astronaut)], 10**7)
    assert len(calls) == 2 and iou(entry["box"], ASTRONAUT_FACE) > 0.7
    store = json.loads((cache / crops.STORE).read_text())
    store["images"][str(astronaut)]["box"] = [1, 2, "x", 4]  # an entry that is not a box is detected again
    (cache / crops.STORE).write_text(json.dumps(store))
    FaceStore(cache).boxes([str(astronaut)], 10**7)
    assert len(calls) == 3


def test_no_face_falls_back_to_the_center_box(astronaut, tmp_path):
    blank = write(tmp_path / "blank.png", np.full((512, 384, 3), 128, np.uint8))
    found = crop_boxes("face", [blank, astronaut], [0.1, 0.2, 0.9, 0.8], 0.4, 0.75, tmp_path / "cache", 10**7)
    assert found.fallbacks == 1
    assert found.boxes[0].tolist() == [0.1, 0.2, 0.9, 0.8]
    assert found.boxes[1].tolist() != [0.1, 0.2, 0.9, 0.8]
    assert found.summary() == dict(kind="face", images=2, fallbacks=1)


def test_an_undecodable_file_falls_back_and_is_not_stored(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    found = crop_boxes("face", [bad], [0.1, 0.2, 0.9, 0.8], 0.4, 0.75, tmp_path / "cache", 10**7)
    assert found.fallbacks == 1
    assert json.loads((tmp_path / "cache" / crops.STORE).read_text())["images"] == {}


def test_the_image_cache_key_includes_the_crop(tmp_path):
    path = write(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    whole = cache_key([path], (8, 8), "none")
    center = cache_key([path], (8, 8), "none", boxes=np.array([[0.1, 0.1, 0.9, 0.9]]))
    other = cache_key([path], (8, 8), "none", boxes=np.array([[0.2, 0.1, 0.9, 0.9]]))
    assert len({whole, center, other}) == 3


def test_a_run_predicts_through_its_crop(tmp_path):
    img = np.zeros((128, 96, 3), np.uint8)
    img[:64] = 255  # the top half white: the box over it gives an all-white input
    path = write(tmp_path / "a.png", img)
    cfg = tiny_cfg(crop="center", crop_box="0,0,1,0.5", cache_margin=1.0)
    white = builders.file_images(cfg, [path], tmp_path, 10**7)[0]
    assert white.shape == (64, 48, 3) and (white == 255).all()
    whole = builders.file_images(tiny_cfg(cache_margin=1.0), [path], tmp_path, 10**7)[0]
    assert whole.shape == (64, 48, 3) and whole.mean() == pytest.approx(127.5, abs=1)


def test_a_store_nested_too_deep_is_read_as_damaged(tmp_path, caplog):
    (tmp_path / crops.STORE).write_text("[" * 200000)
    assert crops.FaceStore(tmp_path).read() == {}
    assert "is unreadable (nests lists or objects too deep to read)" in caplog.text


def test_crop_face_without_its_package_is_refused_before_a_run_folder_exists(dataset, tmp_path, monkeypatch):
    import sys

    from src.engine import trainer
    from src.errors import ConfigError

    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # as if it were not installed
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="f", crop="face")
    with pytest.raises(ConfigError, match="--crop face needs the face detector facenet-pytorch"):
        trainer.train(cfg)
    assert not (tmp_path / "f").exists()
