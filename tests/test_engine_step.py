"""src/engine/step.py: the one training step, checked by hand, with EMA weight averaging."""
import pytest
import torch
from timm.utils import ModelEmaV3

from src.engine import builders
from src.engine.optim import build_optimizer
from tests.helpers import TINY, run_py, tiny_cfg


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


def test_ema_after_k_steps_is_the_hand_computed_average():
    cfg = tiny_cfg(ema="true", ema_decay=0.9, channels_last="false", msd_count=0)
    torch.manual_seed(0)
    model = builders.model(cfg)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True)
    step = builders.train_step(cfg, model, builders.criterion(cfg, [0, 1, 2]), build_optimizer(cfg, model), torch.device("cpu"), ema,
                     model)
    name = next(n for n, p in model.named_parameters() if p.dim() == 4)
    hand = dict(model.named_parameters())[name].detach().clone()
    for k in range(1, 6):
        step(torch.randint(0, 256, (4, 3, 64, 48), dtype=torch.uint8), torch.tensor([0, 5, 12, 17]))
        decay = 0.0 if k <= 1 else min(1 - (1 + (k - 1)) ** (-2 / 3), 0.9)  # timm's warmup, gamma 1
        hand = decay * hand + (1 - decay) * dict(model.named_parameters())[name].detach()
    got = dict(ema.module.named_parameters())[name]
    assert torch.allclose(got, hand, atol=1e-6)
    assert not torch.allclose(got, dict(model.named_parameters())[name], atol=1e-4)  # it really lags the model


@pytest.mark.slow
def test_ema_run_saves_the_average_and_infers_with_it(dataset, tmp_path):
    run_py("train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "e", *TINY, "--fold", "0",
           "--epochs", "1", "--ema", "true", "--ema_decay", "0.5")
    last = torch.load(tmp_path / "e" / "fold0" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "e" / "fold0" / "best_loss.pt", weights_only=True)  # one epoch: it is the best
    ema_weights = {k.removeprefix("module."): v for k, v in last["ema"].items()}
    assert all(torch.equal(best["model"][k], ema_weights[k]) for k in best["model"])
    assert any(not torch.equal(last["model"][k], ema_weights[k]) for k in last["model"]
               if last["model"][k].is_floating_point())
    from src.run.checkpoint import load_weights

    assert all(torch.equal(load_weights(tmp_path / "e" / "fold0" / "last.pt")[k], ema_weights[k]) for k in ema_weights)
    run_py("infer.py", "--data_dir", dataset, "--log_dir", tmp_path, "--run", "e", "--num_workers", "0",
           "--checkpoint", "last")
    assert (tmp_path / "e" / "submission.csv").is_file()
