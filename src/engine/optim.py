"""Optimizer and learning-rate schedule of a config."""
from __future__ import annotations

import math

import torch

from src.config.schema import Optimisation
from src.errors import ConfigError


def build_optimizer(cfg: Optimisation, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer {cfg.optimizer!r}; choose one of: sgd, adam, adamw")


def build_scheduler(cfg: Optimisation, optimizer, steps_per_epoch: int):
    """(scheduler, when): when is 'batch', 'epoch', 'val_loss' or None."""
    s = cfg.scheduler
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.cosine_t_max, eta_min=cfg.eta_min), \
            "epoch"
    if s == "onecycle":
        total = cfg.epochs * max(steps_per_epoch, 1)
        pct_start = cfg.onecycle_pct_start
        if math.isclose(pct_start * total, 1):  # torch divides by zero when the warm-up is exactly one step
            pct_start *= 1 + 1e-9
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=pct_start), "batch"
    if s == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience), "val_loss"
    if s == "none":
        return None, None
    raise ConfigError(f"scheduler {s!r}; choose one of: cosine, onecycle, plateau, none")
