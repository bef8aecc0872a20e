"""src/engine/optim.py: every optimizer and scheduler, and their settings arrive."""
import pytest
import torch

from src.config.parsing import choices, parse
from src.config.schema import TrainConfig
from src.engine import builders
from src.engine.optim import build_optimizer, build_scheduler
from src.errors import ConfigError
from tests.helpers import tiny_cfg


@pytest.mark.parametrize("optimizer", choices(TrainConfig, "optimizer"))
@pytest.mark.parametrize("scheduler", choices(TrainConfig, "scheduler"))
def test_every_optimizer_and_scheduler_runs_a_step(optimizer, scheduler):
    cfg = tiny_cfg(optimizer=optimizer, scheduler=scheduler)
    model = builders.model(cfg)
    opt = build_optimizer(cfg, model)
    sched, when = build_scheduler(cfg, opt, steps_per_epoch=4)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randint(0, 255, (4, 3, 64, 48), dtype=torch.uint8)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if when == "val_loss":
        sched.step(1.0)
    elif when is not None:
        sched.step()
    assert (sched is None) == (scheduler == "none")


def test_unknown_optimizer_or_scheduler_is_refused():
    with pytest.raises(ConfigError, match="sgd, adam, adamw"):
        parse(["--optimizer", "lamb"])
    cfg = tiny_cfg()
    cfg.scheduler = "step"
    with pytest.raises(ConfigError, match="cosine"):
        build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 1)


def test_optimizer_hyperparameters_arrive():
    cfg = tiny_cfg(optimizer="sgd", lr=0.3, momentum=0.8, nesterov="false", weight_decay=0.01)
    group = build_optimizer(cfg, builders.model(cfg)).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.3, 0.8, False, 0.01)
    group = build_optimizer(tiny_cfg(optimizer="adamw", weight_decay=0.05), builders.model(cfg)).param_groups[0]
    assert group["weight_decay"] == 0.05


def test_scheduler_hyperparameters_arrive():
    cfg = tiny_cfg(scheduler="cosine", cosine_t_max=7, eta_min=1e-5, lr=0.1)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert (sched.T_max, sched.eta_min, when) == (7, 1e-5, "epoch")
    cfg = tiny_cfg(scheduler="onecycle", onecycle_pct_start=0.4, epochs=3, lr=0.1)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert sched.total_steps == 30 and when == "batch"
    cfg = tiny_cfg(scheduler="plateau", plateau_factor=0.3, plateau_patience=4)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert (sched.factor, sched.patience, when) == (0.3, 4, "val_loss")


@pytest.mark.parametrize("epochs, steps, pct", [(1, 4, 0.25), (2, 2, 0.25), (1, 2, 0.5), (1, 1, 0.25), (3, 1, 0.9)])
def test_onecycle_runs_every_step_of_tiny_schedules(epochs, steps, pct):
    """A warm-up of exactly one step (epochs x steps x pct_start = 1) made torch's OneCycleLR divide by zero."""
    cfg = tiny_cfg(scheduler="onecycle", onecycle_pct_start=pct, epochs=epochs, lr=0.1)
    opt = build_optimizer(cfg, builders.model(cfg))
    sched, _ = build_scheduler(cfg, opt, steps)
    lrs = []
    for _ in range(epochs * steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 < lr <= 0.1 + 1e-12 for lr in lrs)
    assert len(lrs) < 3 or max(lrs) > lrs[-1]  # it warms up, then anneals


def test_onecycle_pct_start_of_one_is_refused():
    with pytest.raises(ConfigError, match="onecycle_pct_start must be > 0 and < 1"):
        parse(["--onecycle_pct_start", "1"])
