"""src/data/fog.py: FastFog replays, keeps shape and dtype, and changes brightness and contrast as albumentations'
RandomFog does for the same coefficient; the `fog` setting chooses it."""
import albumentations as A
import cv2
import numpy as np
import pytest

from src.data import fog as fog_mod
from src.data.fog import FastFog
from src.engine.builders import train_transform
from tests.helpers import tiny_cfg


def faces(n=6, size=(384, 288)) -> list[np.ndarray]:
    """Flat-shaded faces like the generator's (a background, a face, a dark mask) with mild noise."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = np.full((*size, 3), (200 - 10 * i, 150, 230), np.uint8)
        cv2.ellipse(img, (size[1] // 2, size[0] // 2), (size[1] // 4, size[0] // 3), 0, 0, 360, (240, 220, 200), -1)
        cv2.rectangle(img, (size[1] // 3, size[0] // 2), (2 * size[1] // 3, 2 * size[0] // 3), (30, 30, 40), -1)
        noise = rng.integers(-6, 7, img.shape)
        out.append(np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8))
    return out


def local_contrast(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the luminance: what a blur takes away."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def effect(transform, images) -> tuple[float, float]:
    """(mean brightness lift, mean share of local contrast lost) of `transform` over `images`."""
    transform.set_random_seed(3)
    outs = [transform(image=img)["image"] for img in images]
    lift = np.mean([o.mean() - i.mean() for o, i in zip(outs, images)])
    loss = np.mean([1 - local_contrast(o) / local_contrast(i) for o, i in zip(outs, images)])
    return float(lift), float(loss)


def test_a_fixed_seed_gives_the_same_fog_twice_and_another_seed_another():
    img = faces(1)[0]
    fog = FastFog(fog_coef_range=(0.1, 0.3), p=1.0)
    fog.set_random_seed(7)
    first = [fog(image=img)["image"] for _ in range(3)]
    fog.set_random_seed(7)
    again = [fog(image=img)["image"] for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    fog.set_random_seed(8)
    assert not np.array_equal(fog(image=img)["image"], first[0])


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 4, 3), (7, 9, 3), (383, 287, 3), (64, 48), (512, 384, 3)])
def test_the_shape_and_dtype_never_change(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    fog = FastFog(fog_coef_range=(0.1, 0.3), p=1.0)
    fog.set_random_seed(0)
    out = fog(image=img)["image"]
    assert out.shape == img.shape and out.dtype == np.uint8


@pytest.mark.parametrize("coef", [0.1, 0.3])
def test_brightness_and_contrast_move_as_randomfogs_do(coef):
    """Over the same photos, FastFog's mean lift and loss of local contrast lie within 10% of RandomFog's (bench/feed.py
    measures this over 200 generated photos)."""
    images = faces(4)
    lift, loss = effect(FastFog(fog_coef_range=(coef, coef), p=1.0), images)
    want_lift, want_loss = effect(A.RandomFog(fog_coef_range=(coef, coef), p=1.0), images)
    assert want_lift > 0 and want_loss > 0  # a fog brightens and softens
    assert lift == pytest.approx(want_lift, rel=0.1) and loss == pytest.approx(want_loss, rel=0.1)


def test_the_lift_follows_randomfogs_rounded_blends():
    """One blend of weight alpha lifts v by round(alpha * (255 - v)): nothing where that rounds to zero."""
    lift = fog_mod.first_lift(round(0.008 * 1e6))
    assert lift[0] == 2 and lift[100] == 1 and lift[193] == 0 and lift[255] == 0


def test_the_coverage_counts_each_disc_once():
    """The coarse coverage of discs far from the border is, per cell, the share of its pixels that they cover."""
    x, y, radius = np.array([100, 40]), np.array([120, 60]), np.array([5, 5])
    full = np.zeros((200, 160), np.float32)
    for cx, cy in zip(x, y):
        disc = np.zeros_like(full, np.uint8)
        cv2.circle(disc, (int(cx), int(cy)), 5, 1, thickness=-1)
        full += disc
    coarse = fog_mod.coverage(200, 160, x, y, radius, 2)
    assert coarse.sum() * 4 == pytest.approx(full.sum()) and coarse.max() <= 1


def test_the_fog_setting_chooses_the_fast_fog_or_albumentations():
    def fogs(kind):
        steps = train_transform(tiny_cfg(aug="original", fog=kind)).pipeline.transforms
        return [type(t).__name__ for t in steps if "Fog" in type(t).__name__]

    assert fogs("fast") == ["FastFog"] and fogs("albumentations") == ["RandomFog"]


def test_a_coefficient_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="fog_coef_range"):
        FastFog(fog_coef_range=(0.5, 0.2))
