"""src/data/cache.py: the image cache, its key, its free-space check and the work size it holds."""
import shutil

import numpy as np
import pytest

from src.data import cache
from src.data.cache import build_cache, cache_key
from src.data.images import FileImages
from src.data.tables import load_train
from src.engine import builders
from src.engine.builders import work_size
from src.run import atomic
from tests.helpers import ROOT, tiny_cfg


def test_cache_returns_the_same_pixels_as_files(dataset, tmp_path):
    paths = list(load_train(dataset, "none", 60, None, 42)["path"][:12])
    size = (70, 52)
    files = FileImages(paths, size)
    for kind in ("disk", "ram"):
        cached = build_cache(kind, paths, size, "none", tmp_path, num_workers=0)
        assert len(cached) == 12
        for i in range(12):
            assert np.array_equal(cached[i], files[i]), (kind, i)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = build_cache("disk", paths, size, "none", tmp_path, 0)  # a hit: same file, no rebuild
    assert np.array_equal(again[3], files[3]) and len(list(tmp_path.glob("*.npy"))) == 1


def test_size_or_corrections_change_invalidate_the_cache(dataset, tmp_path):
    paths = list(load_train(dataset, "none", 60, None, 42)["path"][:4])
    corrections = tmp_path / "c.csv"
    corrections.write_text((ROOT / "corrections.csv").read_text())
    base = cache_key(paths, (70, 52), str(corrections))
    assert cache_key(paths, (70, 52), str(corrections)) == base
    assert cache_key(paths, (71, 52), str(corrections)) != base
    corrections.write_text(corrections.read_text() + "000001,gender_male,new find\n")
    assert cache_key(paths, (70, 52), str(corrections)) != base
    assert cache_key(paths[:3], (70, 52), str(corrections)) != base
    build_cache("disk", paths, (70, 52), "none", tmp_path, 0)
    build_cache("disk", paths, (60, 44), "none", tmp_path, 0)
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_image_source_follows_the_cache_option(dataset, tmp_path):
    paths = list(load_train(dataset, "none", 60, None, 42)["path"][:2])
    assert isinstance(builders.images(tiny_cfg(cache="none"), paths, (64, 48), 0), FileImages)
    cached = builders.images(tiny_cfg(cache="disk", log_dir=tmp_path), paths, (64, 48), 0)
    assert cached[0].shape == (64, 48, 3) and list((tmp_path / "cache").glob("*.npy"))


def test_cache_margin_sets_the_work_size():
    assert work_size(tiny_cfg(img_height=100, img_width=80, cache_margin=1.2)) == (120, 96)


@pytest.mark.slow  # subprocesses or a real image decode: seconds each
def test_disk_cache_checks_free_space_first(dataset, tmp_path, monkeypatch):
    paths = list(load_train(dataset, "none", 60, None, 42)["path"][:4])
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(atomic.NoSpace, match=r"need 0.00\d* GB, have 0.00 GB"):
        cache.build_cache("disk", paths, (64, 48), "none", tmp_path / "cache", 0)
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("damage", ["truncate", "shape"])
def test_a_damaged_disk_cache_file_is_rebuilt(dataset, tmp_path, damage):
    table = load_train(dataset, "none", 60, None, 42)
    paths = list(table["path"][:6])
    good = build_cache("disk", paths, (40, 30), "none", tmp_path, 0).array.copy()
    (target,) = tmp_path.glob("*.npy")
    if damage == "truncate":
        with open(target, "r+b") as f:
            f.truncate(target.stat().st_size // 2)
    else:
        np.save(target, np.zeros((6, 30, 40, 3), np.uint8))  # right size, wrong shape
    rebuilt = build_cache("disk", paths, (40, 30), "none", tmp_path, 0)
    assert np.array_equal(rebuilt.array, good)
    assert cache.mapped(target, (6, 40, 30, 3))[1] is None


def test_a_cache_hit_checks_shape_dtype_and_size(tmp_path):
    target = tmp_path / "c.npy"
    assert cache.mapped(target, (2, 4, 4, 3)) == (None, None)
    np.save(target, np.zeros((2, 4, 4, 3), np.float32))
    assert "expected uint8 (2, 4, 4, 3)" in cache.mapped(target, (2, 4, 4, 3))[1]
    np.save(target, np.zeros((2, 4, 4, 3), np.uint8))
    with open(target, "ab") as f:
        f.write(b"x")
    assert "expected" in cache.mapped(target, (2, 4, 4, 3))[1] and "padded" in cache.mapped(target, (2, 4, 4, 3))[1]
    target.write_bytes(b"not an npy file")
    assert "unreadable header" in cache.mapped(target, (2, 4, 4, 3))[1]
