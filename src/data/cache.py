"""Decoded-image cache: every training image decoded and resized once, reused across epochs and folds.

`disk` keeps one .npy per (data, size, corrections) key under <log_dir>/cache/, memory-mapped by
loader workers and shared by concurrent runs; `ram` fills a shared-memory tensor per process.
The key hashes every path with its size and mtime, the work size, the crop boxes and the corrections file, so a
changed dataset, size, crop or corrections file never reads a stale cache.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from src.config.schema import MAX_IMAGE_PIXELS
from src.data.images import FileImages
from src.errors import FileSystemError, NoSpace, filesystem_error
from src.files import irregular, is_regular, read_regular
from src.run.atomic import remove_stale_tmp, save_text

log = logging.getLogger("maskcls")


def cache_key(paths, size, corrections: str, max_pixels: int = MAX_IMAGE_PIXELS, boxes=None) -> str:
    h = hashlib.sha1()
    h.update(f"{size[0]}x{size[1]}:{max_pixels}".encode())  # a lower limit must re-check every image
    h.update(b"whole" if boxes is None else np.ascontiguousarray(boxes, dtype=np.float64).tobytes())
    corr = Path(corrections)
    h.update(read_regular(corr) if corrections.lower() != "none" and is_regular(corr) else b"none")
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


class ArrayImages:
    """Indexable RGB uint8 images backed by one (N, H, W, 3) array."""

    def __init__(self, array):
        self.array = array

    def __len__(self):
        return len(self.array)

    def __getitem__(self, i) -> np.ndarray:
        return np.asarray(self.array[i])


def _decode_all(paths, size, out, num_workers: int, desc: str, max_pixels: int, boxes):
    loader = DataLoader(FileImages(paths, size, max_pixels, boxes), batch_size=None, num_workers=num_workers)
    for i, img in enumerate(tqdm(loader, total=len(paths), desc=desc, mininterval=1)):
        out[i] = img.numpy() if isinstance(img, torch.Tensor) else img


def reserve(path: Path, nbytes: int):
    """Claim the disk blocks of a memory-mapped file up front: a full disk is then a clear error now,
    not a SIGBUS in the middle of writing through the map."""
    free = shutil.disk_usage(path.parent).free
    if free < nbytes:
        raise NoSpace(f"no space left on device for the disk cache {path.parent}: need {nbytes / 1e9:.2f} GB, "
                      f"have {free / 1e9:.2f} GB; free some space, or use --cache ram or --cache none")
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, nbytes)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise NoSpace(f"no space left on device while reserving the disk cache {path}: need "
                      f"{nbytes / 1e9:.2f} GB; use --cache ram or --cache none") from None


def build_cache(kind: str, paths, size, corrections: str, cache_dir: Path, num_workers: int,
                max_pixels: int = MAX_IMAGE_PIXELS, boxes=None) -> ArrayImages:
    """The cached images for `paths` cut to `boxes` (see FileImages) at `size` (H, W); built on first use with a
    progress bar."""
    paths = [str(p) for p in paths]
    shape = (len(paths), size[0], size[1], 3)
    if kind == "ram":
        tensor = torch.empty(shape, dtype=torch.uint8).share_memory_()
        _decode_all(paths, size, tensor.numpy(), num_workers, "cache (ram)", max_pixels, boxes)
        return ArrayImages(tensor.numpy())
    key = cache_key(paths, size, corrections, max_pixels, boxes)
    target = Path(cache_dir) / f"{key}.npy"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise filesystem_error(e, target.parent, "create the cache folder") from None
    with locked(target.parent):
        array, problem = mapped(target, shape)
        if array is not None:
            log.info("cache hit %s", target)
            return ArrayImages(array)
        if problem:
            log.warning("cache file %s is damaged (%s); rebuilding it", target, problem)
            try:
                target.unlink()
            except OSError as e:
                raise FileSystemError(f"{target}: damaged cache file ({problem}) that cannot be removed "
                                      f"({e.strerror}); delete it by hand") from None
        build_disk(target, paths, size, shape, num_workers, max_pixels, boxes)
        save_text(json.dumps({"size": list(size), "images": len(paths), "corrections": corrections}),
                  target.with_suffix(".json"))
    log.info("cache built %s (%.1f MB)", target, target.stat().st_size / 2**20)
    return ArrayImages(np.load(target, mmap_mode="r"))


@contextlib.contextmanager
def locked(folder: Path):
    """The cache folder's lock (flock on the folder itself, so no lock file is left): one process builds or checks
    a cache file at a time, and runs sharing the cache wait, then map what it wrote."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def mapped(target: Path, shape: tuple) -> tuple[np.ndarray | None, str | None]:
    """(the memory-mapped images, None) when target holds uint8 images of `shape` whose bytes are all there;
    (None, what is wrong) when it does not; (None, None) when there is no file."""
    if not target.exists():
        return None, None
    why = irregular(target)
    if why:
        return None, why
    try:
        with open(target, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            found_shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except Exception as e:  # numpy raises several types for a damaged header
        return None, f"unreadable header: {e}"
    if tuple(found_shape) != shape or dtype != np.uint8 or fortran:
        return None, f"holds {dtype} {tuple(found_shape)}, expected uint8 {shape}"
    size, expected = target.stat().st_size, offset + int(np.prod(shape))
    if size != expected:
        return None, f"{size:,} bytes, expected {expected:,} (truncated or padded)"
    return np.load(target, mmap_mode="r"), None


def build_disk(target: Path, paths, size, shape, num_workers: int, max_pixels: int, boxes):
    """Decode every image into a temp .npy beside target, then move it into place."""
    remove_stale_tmp(target.parent)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        reserve(tmp, array.offset + array.nbytes)
        _decode_all(paths, size, array, num_workers, "cache (disk)", max_pixels, boxes)
        array.flush()
        del array
        os.replace(tmp, target)
    except OSError as e:
        if isinstance(e, NoSpace):
            raise
        raise filesystem_error(e, tmp, "write the disk cache") from None
    finally:
        tmp.unlink(missing_ok=True)


ImageSource = ArrayImages | FileImages  # what a dataset indexes: images cached in an array, or files decoded per access


def image_source(kind: str, paths, size, corrections: str, cache_dir: Path, num_workers: int,
                 max_pixels: int = MAX_IMAGE_PIXELS, boxes=None) -> ImageSource:
    """Cached images (kind ram or disk) or, with kind none, files decoded per access; both cut to `boxes` and
    resized to `size`."""
    if kind == "none":
        return FileImages(paths, size, max_pixels, boxes)
    return build_cache(kind, paths, size, corrections, cache_dir, num_workers, max_pixels, boxes)
