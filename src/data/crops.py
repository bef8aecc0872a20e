"""The crop before the resize: the whole frame, a fixed box, or a detected face.

A box is x0 y0 x1 y1 as fractions of its frame, so one box fits photos of any size. `face` runs facenet-pytorch's
MTCNN (its weights ship inside the wheel: nothing is downloaded) once per image and keeps the raw boxes in
<log_dir>/cache/faces-mtcnn.json, keyed by path, size and mtime; the margin and the aspect are applied after, so
changing them never re-detects. Where no face is found the image falls back to crop_box.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from src.data.cache import locked
from src.data.images import read_rgb
from src.errors import ConfigError, DataError
from src.files import read_json
from src.run.atomic import save_text

log = logging.getLogger("maskcls")

DETECTOR = "facenet-pytorch 2.6.0 MTCNN"
INSTALL = "pip install --no-deps facenet-pytorch==2.6.0 && pip install requests"
DETECT_SIDE = 256  # images shrink to this longest side before detection: faces fill half the frame, 2.5x faster
MIN_FACE = 40  # smallest face side in pixels at DETECT_SIDE (MTCNN's default 20 mostly finds false faces there)
MIN_PROB = 0.9  # a detection below this probability counts as no face
BATCH = 16  # images of one size detected together
STORE = "faces-mtcnn.json"


@dataclass
class Crops:
    """The box of each image (None: the whole frame) and how many face crops fell back to crop_box."""
    kind: str
    images: int
    boxes: np.ndarray | None  # (N, 4) fractions x0 y0 x1 y1
    fallbacks: int = 0

    def summary(self) -> dict:
        return dict(kind=self.kind, images=self.images, fallbacks=self.fallbacks)


def widen(box, frame: tuple[int, int], margin: float, aspect: float) -> list[float]:
    """A face box (pixels of a frame of (width, height)) grown by `margin` of its size on each side, then widened to
    width/height = aspect, shrunk if it outgrows the frame and shifted inside it; as fractions of the frame."""
    fw, fh = frame
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    w, h = max(w, h * aspect), max(h, w / aspect)
    scale = min(1.0, fw / w, fh / h)
    w, h = w * scale, h * scale
    left = min(max(cx - w / 2, 0.0), fw - w)
    top = min(max(cy - h / 2, 0.0), fh - h)
    return [left / fw, top / fh, (left + w) / fw, (top + h) / fh]


def crop_boxes(kind: str, paths, crop_box, face_margin: float, aspect: float, cache_dir: Path,
               max_pixels: int) -> Crops:
    """The Crops of `paths` for crop `kind`; face boxes come from the store in cache_dir, detected where missing."""
    paths = [str(p) for p in paths]
    if kind == "none":
        return Crops(kind, len(paths), None)
    center = np.asarray(crop_box, dtype=np.float64)
    boxes = np.tile(center, (len(paths), 1))
    if kind == "center":
        return Crops(kind, len(paths), boxes)
    found = FaceStore(Path(cache_dir)).boxes(paths, max_pixels)
    fallbacks = 0
    for i, entry in enumerate(found):
        if entry is None or entry["box"] is None:
            fallbacks += 1
        else:
            boxes[i] = widen(entry["box"], entry["frame"], face_margin, aspect)
    log.info("crop face: %d of %d images had no face found and fell back to crop_box %s", fallbacks, len(paths),
             " ".join(f"{c:g}" for c in crop_box))
    return Crops(kind, len(paths), boxes, fallbacks)


class FaceStore:
    """Raw MTCNN boxes per image in cache_dir/faces-mtcnn.json: {path: {size, mtime_ns, frame, box, p}}. An entry
    counts only while its file's size and mtime match; a damaged store is rebuilt."""

    def __init__(self, cache_dir: Path):
        self.path = cache_dir / STORE

    def boxes(self, paths: list[str], max_pixels: int) -> list[dict | None]:
        """Each path's entry (box None: no face); None where the file cannot be decoded (its decode reports it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("face boxes are not kept: cannot create %s (%s)", self.path.parent, e.strerror)
            return detect(paths, max_pixels)
        stamps = [stamp(p) for p in paths]
        with locked(self.path.parent):
            store = self.read()
        missing = [i for i, (p, s) in enumerate(zip(paths, stamps)) if s is not None and not same_file(store.get(p), s)]
        if missing:  # detected outside the cache folder's lock, which disk caches of other runs need meanwhile
            found = {paths[i]: {**entry, **stamps[i]}
                     for i, entry in zip(missing, detect([paths[i] for i in missing], max_pixels)) if entry is not None}
            with locked(self.path.parent):
                store = self.read() | found  # what another process stored meanwhile is kept
                self.write(store)
        return [store.get(p) if s is not None and same_file(store.get(p), s) else None for p, s in zip(paths, stamps)]

    def read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = read_json(self.path)
            entries = data["images"]
            if data.get("detector") != DETECTOR or not isinstance(entries, dict):
                raise ValueError("another detector's store")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("face box store %s is unreadable (%s); detecting again", self.path, e)
            return {}
        return {p: e for p, e in entries.items() if valid_entry(e)}

    def write(self, store: dict):
        try:
            save_text(json.dumps({"detector": DETECTOR, "detect_side": DETECT_SIDE, "images": store}), self.path)
        except OSError as e:
            log.warning("face boxes are not kept: cannot write %s (%s)", self.path, e.strerror)


def stamp(path: str) -> dict | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def same_file(entry: dict | None, s: dict) -> bool:
    return entry is not None and entry.get("size") == s["size"] and entry.get("mtime_ns") == s["mtime_ns"]


def valid_entry(e) -> bool:
    """A store entry as detect writes it: a frame of two positive ints and a box of four finite numbers or null."""
    try:
        w, h = e["frame"]
        ok = isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0
        box = e["box"]
        return ok and (box is None or (len(box) == 4 and all(isinstance(c, (int, float)) and math.isfinite(c)
                                                              for c in box) and box[0] < box[2] and box[1] < box[3]))
    except (KeyError, TypeError, ValueError):
        return False


def detector_class():
    """facenet-pytorch's MTCNN, or the one line that says how to install it."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        raise ConfigError(f"--crop face needs the face detector facenet-pytorch; install it with: {INSTALL}") from None
    return MTCNN


def detector():
    return detector_class()(min_face_size=MIN_FACE, select_largest=True, device="cpu")


def detect(paths: list[str], max_pixels: int) -> list[dict | None]:
    """{frame: [w, h], box: the largest face in frame pixels or None, p} per path; None where decoding fails."""
    mtcnn = detector()
    out: list[dict | None] = [None] * len(paths)
    batch: list[tuple[int, np.ndarray, float]] = []

    def flush():
        if not batch:
            return
        with torch.inference_mode():
            boxes, probs = mtcnn.detect([small for _, small, _ in batch])
        for (i, _, scale), b, p in zip(batch, boxes, probs):
            keep = b is not None and p[0] is not None and p[0] >= MIN_PROB
            out[i]["box"] = [float(c) / scale for c in b[0]] if keep else None
            out[i]["p"] = float(p[0]) if keep else None
        batch.clear()

    for i, path in enumerate(tqdm(paths, desc="face boxes", mininterval=1)):
        try:
            img = read_rgb(path, max_pixels)
        except DataError:
            continue
        h, w = img.shape[:2]
        scale = min(1.0, DETECT_SIDE / max(h, w))
        small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else img
        out[i] = {"frame": [w, h], "box": None, "p": None}
        if batch and (batch[0][1].shape != small.shape or len(batch) == BATCH):
            flush()
        batch.append((i, small, scale))
    flush()
    return out
