"""The one training step (src/step.py): what it does to the weights, checked by hand."""
import pytest
import torch

from tests.helpers import tiny_cfg
from src.engine import builders
from src.engine.optim import build_optimizer
from src.engine.step import TrainStep


def one_step(**overrides):
    cfg = tiny_cfg(optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, channels_last="false", msd_count=0,
                   head="linear", loss="ce", **overrides)
    torch.manual_seed(0)
    model = builders.model(cfg)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    step = builders.train_step(cfg, model, builders.criterion(cfg), build_optimizer(cfg, model), torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8)
    out = step(x, torch.tensor([0, 5, 12, 17]))
    delta = torch.cat([p.detach().flatten() for p in model.parameters()]) - before
    return out, delta  # with SGD at lr 1 and no momentum, delta is minus the (clipped) gradient


def test_unclipped_step_moves_by_the_gradient_and_returns_the_loss():
    (loss, sup, cons, logits), delta = one_step()
    assert loss.item() == pytest.approx(sup.item()) and cons.item() == 0 and logits.shape == (4, 18)
    assert delta.norm() > 0.05  # large enough that the clipping checks below bite


@pytest.mark.parametrize("mode, measure", [("norm", lambda d: d.norm()), ("value", lambda d: d.abs().max())])
def test_clipping_bounds_the_update(mode, measure):
    _, delta = one_step(grad_clip=0.01, grad_clip_mode=mode)
    assert measure(delta) <= 0.01 + 1e-6
    assert measure(delta) >= 0.009  # clipped to the bound, not zeroed


@pytest.mark.parametrize("heads", ["joint", "per_task"])
def test_uda_term_joins_the_loss_with_its_weight(heads):
    cfg = tiny_cfg(uda="true", uda_weight=3.0, channels_last="false", msd_count=0, heads=heads)
    model = builders.model(cfg)
    step = builders.train_step(cfg, model, builders.criterion(cfg), build_optimizer(cfg, model), torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8)
    u = torch.randint(0, 256, (4, 2, 3, 64, 48), dtype=torch.uint8)
    loss, sup, cons, logits = step(x, torch.tensor([0, 1, 2, 3]), u)
    assert cons.item() > 0 and loss.item() == pytest.approx(sup.item() + 3.0 * cons.item(), rel=1e-5)
    assert logits.shape == (4, 18)  # the labelled rows only
