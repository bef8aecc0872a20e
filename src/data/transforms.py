"""Augmentation with albumentations 2.x. Transforms return uint8 CHW tensors; the model normalises.

`original` ports the 4th-place entry's pipeline, written for albumentations 1.x; the names that changed since are
noted inline.
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from src.data.fog import FastFog
from src.seeds import grid_seed, view_seed


def resize(size: tuple[int, int]):
    # Images arrive at work_size (INTER_AREA from the full decode), a small step above the input:
    # bilinear is as good there and 10x cheaper than INTER_AREA at non-integer ratios.
    return A.Resize(size[0], size[1], interpolation=cv2.INTER_LINEAR)


def fog(kind: str, p: float):
    """The original entry's fog: RandomFog(fog_coef_lower=0.1, fog_coef_upper=0.3), whose range is now fog_coef_range;
    `fast` is FastFog, its look at a few hundredths of its cost (src/data/fog.py)."""
    if kind == "albumentations":
        return A.RandomFog(fog_coef_range=(0.1, 0.3), p=p)
    return FastFog(fog_coef_range=(0.1, 0.3), p=p)


def original_pipeline(size: tuple[int, int], fog_kind: str) -> list:
    return [
        resize(size),
        A.HorizontalFlip(p=0.7),
        # GaussNoise(var_limit=(10, 50)) in 1.x: a std of 3.2-7.1 of 255, now given as a fraction
        A.GaussNoise(std_range=(0.012, 0.028), p=0.5),
        # ShiftScaleRotate(0.1, 0.25, 20) is deprecated in favour of Affine
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.75, 1.25), rotate=(-20, 20),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        # RandomBrightness and RandomContrast no longer exist: RandomBrightnessContrast
        A.OneOf([A.CLAHE(clip_limit=4.0), A.RandomBrightnessContrast(), A.RandomGamma()], p=0.5),
        A.OneOf([A.HueSaturationValue(), A.RGBShift(), A.Emboss()], p=0.5),
        fog(fog_kind, p=0.3),
        # OpticalDistortion lost shift_limit; distort_limit alone remains
        A.OneOf([A.Perspective(), A.GridDistortion(), A.OpticalDistortion(distort_limit=0.05)], p=0.5),
    ]


def geometric_pipeline(size: tuple[int, int], _fog_kind: str = "") -> list:
    return [
        resize(size),
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1), rotate=(-10, 10),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.5),
    ]


def light_pipeline(size: tuple[int, int], _fog_kind: str = "") -> list:
    return [*geometric_pipeline(size), A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5)]


PRESETS = {"original": original_pipeline, "light": light_pipeline, "geometric": geometric_pipeline,
           "none": lambda size, _fog_kind="": [resize(size)]}  # only the original pipeline has a fog


class Augment:
    """(image, label) -> uint8 CHW tensor; GridShuffle only for the configured classes.

    Randomness is reseeded once per (epoch, worker) from `seed`, so a resumed run replays the
    same augmentations as an uninterrupted one for any worker count.
    """

    def __init__(self, steps: list, grid: A.RandomGridShuffle | None = None, grid_classes=()):
        self.pipeline = A.Compose(steps)
        self.grid = A.Compose([grid]) if grid is not None else None
        self.grid_classes = frozenset(grid_classes)

    def reseed(self, seed: int):
        self.pipeline.set_random_seed(seed)
        if self.grid is not None:
            self.grid.set_random_seed(grid_seed(seed))

    def __call__(self, image: np.ndarray, label: int = -1) -> torch.Tensor:
        image = self.pipeline(image=image)["image"]
        if self.grid is not None and label in self.grid_classes:
            image = self.grid(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class Views:
    """Several augmentations of one image stacked: (V, C, H, W). UDA uses (weak, strong)."""

    def __init__(self, *augments: Augment):
        self.augments = augments

    def reseed(self, seed: int):
        for k, a in enumerate(self.augments):
            a.reseed(view_seed(seed, k))

    def __call__(self, image, label=-1):
        return torch.stack([a(image, label) for a in self.augments])


def train_transform(preset: str, size: tuple[int, int], grid_p: float = 0.0, grid_n: int = 2,
                    grid_classes=(), *, fog_kind: str) -> Augment:
    """The augmentation preset at `size` (H, W); GridShuffle (grid_n x grid_n, probability grid_p) for
    grid_classes only; `fog_kind` the original pipeline's fog."""
    grid = A.RandomGridShuffle(grid=(grid_n, grid_n), p=grid_p) if grid_p > 0 else None
    return Augment(PRESETS[preset](size, fog_kind), grid, grid_classes)


def eval_transform(size: tuple[int, int]) -> Augment:
    return Augment([resize(size)])


def uda_transform(size: tuple[int, int], fog_kind: str) -> Views:
    """Weak view: resize and flip. Strong view: the original pipeline."""
    weak = Augment([resize(size), A.HorizontalFlip(p=0.5)])
    return Views(weak, Augment(original_pipeline(size, fog_kind)))


def work_size(size: tuple[int, int], margin: float) -> tuple[int, int]:
    """Size images are decoded (and cached) at: a margin over the input for crop/scale augmentation."""
    return round(size[0] * margin), round(size[1] * margin)
