"""src/data/transforms.py: the augmentation presets, reseeding and GridShuffle."""
import albumentations as A
import numpy as np
import pytest
import torch

from src.data.transforms import PRESETS
from src.engine.builders import eval_transform, train_transform, uda_transform
from tests.helpers import tiny_cfg


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_give_uint8_chw_at_the_input_size(preset):
    cfg = tiny_cfg(aug=preset, img_height=40, img_width=30)
    img = np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    aug = train_transform(cfg)
    aug.reseed(1)
    out = aug(img, 0)
    assert out.dtype == torch.uint8 and out.shape == (3, 40, 30)
    assert eval_transform(cfg)(img).shape == (3, 40, 30)
    assert uda_transform(cfg)(img).shape == (2, 3, 40, 30)


def test_reseeding_replays_the_same_augmentation():
    aug = train_transform(tiny_cfg(aug="original"))
    img = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    aug.reseed(5)
    a = [aug(img, 0) for _ in range(4)]
    aug.reseed(5)
    b = [aug(img, 0) for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_gridshuffle_touches_only_the_configured_classes():
    cfg = tiny_cfg(aug="none", gridshuffle_p=1.0, gridshuffle_grid=2, gridshuffle_classes="12,13",
                   img_height=64, img_width=48)
    aug = train_transform(cfg)
    aug.reseed(0)
    img = np.zeros((64, 48, 3), np.uint8)
    img[:32, :24] = 255  # a bright top-left tile
    plain = aug(img, 3)
    assert torch.equal(plain, torch.from_numpy(img.transpose(2, 0, 1).copy()))
    moved = [not torch.equal(aug(img, 12), plain) for _ in range(8)]
    assert any(moved)
    assert all(torch.equal(aug(img, label), plain) for label in (0, 5, 11, 14, 17))
    assert train_transform(tiny_cfg(gridshuffle_p=0)).grid is None


def test_albumentations_invalid_arguments_fail_the_suite():
    with pytest.raises(UserWarning, match="not valid"):
        A.RandomFog(fog_coef_lower=0.3)
