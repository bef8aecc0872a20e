"""src/engine/mixing.py: batch mixing and its loss inside the one training step."""
import numpy as np
import pytest
import torch

from src.engine import builders
from src.engine.mixing import BatchMixer
from src.engine.optim import build_optimizer
from tests.helpers import tiny_cfg


def constant_batch(n=4, height=8, width=6):
    """Image i is filled with 10 * (i + 1): every pixel says which image it came from."""
    return torch.arange(1, n + 1, dtype=torch.uint8).mul(10).view(n, 1, 1, 1).expand(n, 3, height, width).clone()


def test_halves_put_the_left_half_of_one_face_beside_the_right_half_of_another():
    x, y = constant_batch(width=6), torch.tensor([0, 7, 12, 17])
    np.random.seed(0)
    mixed = BatchMixer(1.0, "halves")(x, y)
    assert torch.equal(mixed.x[..., :3], x[..., :3])  # left half: the image itself
    assert torch.equal(mixed.x[..., 3:], x.flip(0)[..., 3:])  # right half: its partner's
    assert torch.equal(mixed.y_b, torch.tensor([17, 12, 7, 0])) and mixed.lam == 0.5
    odd = BatchMixer(1.0, "halves")(constant_batch(width=7), y)
    assert odd.lam == pytest.approx(3 / 7)  # the share of the width that stays


def test_cutmix_pastes_one_box_and_lam_is_the_area_kept():
    x, y = constant_batch(height=32, width=24), torch.tensor([1, 2, 3, 4])
    np.random.seed(3)
    mixed = BatchMixer(1.0, "cutmix", cutmix_alpha=1.0)(x, y)
    from_partner = mixed.x == x.flip(0)
    assert (from_partner | (mixed.x == x)).all()  # every pixel from one of the two
    box = from_partner[0, 0]
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    assert 0 < box.sum() < box.numel() and box.sum() == len(rows) * len(cols)  # one rectangle
    assert torch.equal(from_partner, box.expand_as(from_partner))  # the same box in every image and channel
    assert mixed.lam == pytest.approx(1 - box.sum().item() / box.numel())
    assert torch.equal(mixed.y_b, y.flip(0))


def test_mixup_blends_every_pixel_with_lam():
    x, y = constant_batch(), torch.tensor([1, 2, 3, 4])
    np.random.seed(1)
    mixed = BatchMixer(1.0, "mixup", mixup_alpha=0.4)(x, y)
    assert 0 < mixed.lam < 1 and mixed.x.dtype == torch.uint8
    want = (mixed.lam * x.float() + (1 - mixed.lam) * x.flip(0).float()).round()
    assert torch.equal(mixed.x.float(), want)


def test_mix_prob_is_the_share_of_mixed_batches():
    x, y = constant_batch(), torch.tensor([1, 2, 3, 4])
    assert BatchMixer(0.0)(x, y) is None
    np.random.seed(0)
    mixed = sum(BatchMixer(0.3, "halves")(x, y) is not None for _ in range(400))
    assert 80 < mixed < 160


@pytest.mark.parametrize("mode", ["halves", "cutmix", "mixup"])
@pytest.mark.parametrize("heads, head, loss", [("per_task", "arcface", "focal"), ("joint", "arcface", "focal"),
                                               ("joint", "linear", "ce")])
def test_mixed_loss_is_the_lam_weighted_pair_of_losses(mode, heads, head, loss):
    cfg = tiny_cfg(mix_prob=1.0, mix_mode=mode, heads=heads, head=head, loss=loss, msd_count=0, neck="bn",
                   channels_last="false")
    torch.manual_seed(0)
    model = builders.model(cfg).train()
    labels = np.arange(18).repeat(2)
    criterion = builders.criterion(cfg, labels)
    x = torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8)
    y = torch.tensor([0, 7, 12, 17])
    np.random.seed(5)
    mixed = builders.mixer(cfg)(x, y)
    with torch.no_grad():
        out = model(mixed.x, per_head=True)
        want = mixed.lam * criterion(out, y) + (1 - mixed.lam) * criterion(out, mixed.y_b)
        assert not torch.allclose(want, criterion(out, y))  # the second source changes the loss
    np.random.seed(5)  # the step draws the same mix
    step = builders.train_step(cfg, model, criterion, build_optimizer(cfg, model), torch.device("cpu"))
    loss_value, sup, _, logits = step(x, y)
    assert sup.item() == pytest.approx(want.item(), rel=1e-5) and loss_value.item() == pytest.approx(sup.item())
    assert logits.shape == (4, 18)
