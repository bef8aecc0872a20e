"""Cheap appearance features for finding the photos of one person again: the photo shrunk to a coarse grid of log
colours. The seven photos of a person share the background, the clothes, the skin and the hair; the mask, the pose
and the light differ. Which differences tell two people apart is learnt from the training people
(src/people.py's PersonMetric), not chosen here."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from src.data.images import read_rgb

GRID = (16, 12)  # rows, columns of the colour grid (a 4:3 portrait)
FEATURES = GRID[0] * GRID[1] * 3
DECODE_REDUCE = 8  # a JPEG is decoded at 1/8 of its size: the grid needs no more, and it is 3-4 times faster


def thumbnail(img: np.ndarray) -> np.ndarray:
    """(FEATURES,) the log of each grid cell's mean RGB."""
    small = cv2.resize(img, GRID[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.log1p(small).ravel()


def appearance(paths, max_pixels: int, workers: int = 2) -> np.ndarray:
    """(len(paths), FEATURES) features; a row of NaN for a photo that cannot be decoded (it is decided alone)."""
    def one(path):
        try:
            return thumbnail(read_rgb(path, max_pixels, reduce=DECODE_REDUCE))
        except Exception:  # any decode failure: that photo joins no group
            return np.full(FEATURES, np.nan, dtype=np.float32)

    paths = list(paths)
    if not paths:
        return np.zeros((0, FEATURES), dtype=np.float32)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # cv2 decodes outside the GIL
        return np.stack(list(pool.map(one, paths)))
