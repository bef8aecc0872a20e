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


def test_geometric_moves_pixels_but_keeps_every_shade_while_light_changes_them():
    img = np.full((64, 48, 3), 90, np.uint8)
    img[:, :20] = (200, 200, 205)  # the generator's grey hair beside a darker half
    shades = {}
    for preset in ("geometric", "light"):
        aug = train_transform(tiny_cfg(aug=preset, img_height=64, img_width=48))
        aug.reseed(2)
        outs = [aug(img, 0) for _ in range(16)]
        shades[preset] = set().union(*(map(tuple, o.permute(1, 2, 0).reshape(-1, 3).tolist()) for o in outs))
        assert any(not torch.equal(o, outs[0]) for o in outs)  # flips and affines move pixels
    # resampling only blends the two shades at their edge: the pure ones survive unchanged
    assert {(200, 200, 205), (90, 90, 90)} <= shades["geometric"]
    assert all(min(s) >= 90 and max(s) <= 205 for s in shades["geometric"])
    assert any(max(s) > 205 or min(s) < 90 for s in shades["light"])  # brightness and contrast move them


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
