"""A fog with the look of albumentations' RandomFog (2.0.8) at a few hundredths of its cost.

RandomFog draws thousands of white discs (about 6,000 at fog coefficient 0.1 and 384x288), each blended into a copy
of the whole image with weight alpha_coef x intensity, then blurs the result: 0.3-0.8 s an image. Per pixel that is
k rounded blending steps, k the number of discs that cover it, so the fog adds lift(k, v) = steps_k(v) - v to a pixel
of value v, and then blurs. The blur is linear, so the result is blur(image) + blur(lift): the lift is smooth and is
computed here at a quarter of the resolution (disc counts from the same particle layout and the same rounded steps),
then scaled up and added to the blurred image. bench/feed.py measures the cost and compares brightness lift and
local contrast with RandomFog's on the same photos; docs/models.md shows both side by side.
"""
from __future__ import annotations

import functools
from typing import Any

import albumentations as A
import cv2
import numpy as np

SCALE = 2  # the lift is computed on a grid this many times coarser than the image
SHRINK = 0.1  # RandomFog's nested fog regions: each 10% smaller than the last, at most 10 of them
REGIONS = 10


def blur_size(height: int, width: int) -> int:
    """RandomFog's final Gaussian blur: an odd kernel of a thirtieth of the shorter side, at least 3."""
    size = max(3, min(height, width) // 30)
    return size + 1 if size % 2 == 0 else size


def particles(height: int, width: int, intensity: float, rng: np.random.Generator):
    """(x, y, radius) of RandomFog's discs: in REGIONS nested rectangles around the centre, each region holding
    area / region_size^2 x intensity x 10 discs, radii from half the largest to the largest (exclusive)."""
    region = max(1, int(width // 3 * intensity))
    cx, cy = int((width - 1) / 2), int((height - 1) / 2)  # fgeometric.center
    counts, half_w, half_h = [], [], []
    w, h = width, height
    for _ in range(REGIONS):
        if not (w > region and h > region):
            break
        counts.append(int(w * h / (region * region) * intensity * 10))
        half_w.append(w // 2)
        half_h.append(h // 2)
        w, h = int(w * (1 - SHRINK)), int(h * (1 - SHRINK))
    hw, hh = np.repeat(np.array(half_w, np.int32), counts), np.repeat(np.array(half_h, np.int32), counts)
    u = rng.random((2, len(hw)), dtype=np.float32)  # uniform integers from floats: half the cost of integers()
    x = (u[0] * (2 * hw + 1)).astype(np.int32) + (cx - hw)  # randint is inclusive: [cx - hw, cx + hw]
    y = (u[1] * (2 * hh + 1)).astype(np.int32) + (cy - hh)
    largest = max(2, int(min(height, width) * 0.1 * intensity))
    radius = rng.integers(max(1, largest // 2), largest, len(x), dtype=np.int32)
    return x, y, radius


@functools.lru_cache(maxsize=64)
def disc_kernel(low: int, high: int, scale: int) -> np.ndarray:
    """The mean coverage a disc adds to each pixel of the cells around its own, on the coarse grid: discs of each
    radius in [low, high), filled as cv2.circle fills them, centred at each pixel of a cell, summed into cells."""
    reach = -(-(high - 1) // scale) + 1  # cells a disc may reach on either side of its own
    cells = 2 * reach + 1
    total = np.zeros((cells, cells))
    canvas = np.empty((cells * scale, cells * scale), np.uint8)
    for r in range(low, high):
        for dy in range(scale):
            for dx in range(scale):
                canvas.fill(0)
                cv2.circle(canvas, (reach * scale + dx, reach * scale + dy), r, 1, thickness=-1)
                total += canvas.reshape(cells, scale, cells, scale).sum((1, 3))
    return (total / ((high - low) * scale ** 4)).astype(np.float32)  # per centre, per pixel of a cell


@functools.lru_cache(maxsize=256)
def first_lift(alpha_millionths: int) -> np.ndarray:
    """The lift of one blend towards white, as cv2.addWeighted rounds it, for each value 0-255: zero where alpha x
    (255 - v) rounds to nothing, as in RandomFog."""
    alpha, v = alpha_millionths / 1e6, np.arange(256.0)
    return (np.rint(alpha * 255 + (1 - alpha) * v) - v).astype(np.float32)


def coverage(height: int, width: int, x, y, radius, scale: int) -> np.ndarray:
    """Mean number of discs covering each pixel of a scale x scale cell, on the coarse grid."""
    gh, gw = -(-height // scale), -(-width // scale)
    cells = np.bincount(np.clip(y // scale, 0, gh - 1) * gw + np.clip(x // scale, 0, gw - 1),
                        minlength=gh * gw).astype(np.float32).reshape(gh, gw)
    if not len(radius):
        return cells
    kernel = disc_kernel(int(radius.min()), int(radius.max()) + 1, scale)
    return cv2.filter2D(cells, -1, kernel, borderType=cv2.BORDER_CONSTANT)  # symmetric: correlation = convolution


def bayer(n: int) -> np.ndarray:
    """The n x n ordered-dither (Bayer) matrix of the ranks 0 .. n^2 - 1, n a power of two."""
    if n == 1:
        return np.zeros((1, 1), np.int64)
    half = bayer(n // 2)
    return np.block([[4 * half, 4 * half + 2], [4 * half + 3, 4 * half + 1]])


@functools.lru_cache(maxsize=16)
def dither(height: int, width: int, channels: int) -> np.ndarray:
    """8x8 ordered-dither thresholds in (-0.5, 0.5) tiled over (height, width, channels): the coarse lift is rounded
    after adding them, so a lift of 0.3 grey levels lifts 30% of the cells by one (to 1/64), as RandomFog's
    whole-level steps add up."""
    tile = ((bayer(8) + 0.5) / 64 - 0.5).astype(np.float32)
    tiled = np.tile(tile, (-(-height // 8), -(-width // 8)))[:height, :width]
    return np.ascontiguousarray(np.repeat(tiled[..., None], channels, axis=2))


def add_fog(image: np.ndarray, intensity: float, alpha_coef: float, x, y, radius, scale: int = SCALE) -> np.ndarray:
    """RandomFog's result for these discs. k blends lift a pixel of value v by first_lift(v) x (1 - (1 - alpha)^k) /
    alpha, within 2% of the k rounded blends for the k and alpha of the original preset; the lift is computed on the
    coarse grid, scaled up, added, and the sum blurred by RandomFog's Gaussian (as two separable passes)."""
    height, width = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    alpha = alpha_coef * intensity
    k = coverage(height, width, x, y, radius, scale)
    blends = (1 - cv2.exp(k * np.float32(np.log1p(-alpha)))) / alpha if 0 < alpha < 1 else k
    coarse = cv2.resize(image, (k.shape[1], k.shape[0]), interpolation=cv2.INTER_LINEAR)  # = area at exactly 1/2
    lift = cv2.LUT(coarse, first_lift(round(alpha * 1e6))).reshape(*k.shape, channels)
    lift = cv2.multiply(lift, cv2.merge([blends] * channels).reshape(lift.shape))
    lift = cv2.convertScaleAbs(cv2.add(lift, dither(*k.shape, channels)))  # rounded to whole grey levels
    lift = cv2.resize(lift, (width, height), interpolation=cv2.INTER_NEAREST).reshape(image.shape)  # keeps the mean
    kernel = gaussian_kernel(blur_size(height, width))
    return cv2.sepFilter2D(cv2.add(image, lift), -1, kernel, kernel)


@functools.lru_cache(maxsize=16)
def gaussian_kernel(size: int) -> np.ndarray:
    return cv2.getGaussianKernel(size, 0).astype(np.float32)  # GaussianBlur's sigma for this size


class FastFog(A.ImageOnlyTransform):
    """RandomFog's parameters and look (albumentations 2.0.8), at about a millisecond an image of 384x288."""

    def __init__(self, fog_coef_range: tuple[float, float] = (0.3, 1.0), alpha_coef: float = 0.08, p: float = 0.5):
        super().__init__(p=p)
        low, high = fog_coef_range
        if not 0 <= low <= high <= 1 or not 0 <= alpha_coef <= 1:
            raise ValueError(f"FastFog: fog_coef_range {fog_coef_range} must rise within [0, 1] and alpha_coef "
                             f"{alpha_coef} lie in [0, 1]")
        self.fog_coef_range, self.alpha_coef = (low, high), alpha_coef

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        intensity = self.py_random.uniform(*self.fog_coef_range)
        x, y, radius = particles(*params["shape"][:2], intensity, self.random_generator)
        return dict(intensity=intensity, x=x, y=y, radius=radius)

    def apply(self, img: np.ndarray, intensity: float, x, y, radius, **params: Any) -> np.ndarray:
        return add_fog(img, intensity, self.alpha_coef, x, y, radius)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return "fog_coef_range", "alpha_coef"
