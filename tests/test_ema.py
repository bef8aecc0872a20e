"""Weight averaging (timm ModelEmaV3 inside the one training step)."""
import pytest
import torch
from timm.utils import ModelEmaV3

from tests.helpers import TINY, run_py, tiny_cfg
from src.engine import builders
from src.engine.optim import build_optimizer
from src.engine.step import TrainStep


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
    from src.checkpoint import load_weights

    assert all(torch.equal(load_weights(tmp_path / "e" / "fold0" / "last.pt")[k], ema_weights[k]) for k in ema_weights)
    run_py("infer.py", "--data_dir", dataset, "--log_dir", tmp_path, "--run", "e", "--num_workers", "0",
           "--checkpoint", "last")
    assert (tmp_path / "e" / "submission.csv").is_file()
