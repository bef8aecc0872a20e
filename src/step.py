"""The one training step: forward, loss (with the UDA term), backward, clipping, optimizer and grad scaler.

The fold loop and bench/throughput.py both call `TrainStep`, so the benchmark measures the real step.
"""
from __future__ import annotations

import torch
from timm.utils import dispatch_clip_grad

from src.forward import autocast, to_device
from src.losses import uda_consistency


class TrainStep:
    """`step(x, y, unlabeled=None)` trains on one batch and returns (loss, supervised, consistency, logits).

    `unlabeled` is a (B, 2, C, H, W) batch of weak and strong views; it adds cfg.uda_weight x KL.
    """

    def __init__(self, model, criterion, optimizer, cfg, device):
        self.model, self.criterion, self.optimizer, self.cfg, self.device = model, criterion, optimizer, cfg, device
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")

    def __call__(self, x, y, unlabeled=None):
        cfg, device = self.cfg, self.device
        x, y = to_device(x, device, cfg.channels_last), y.to(device, non_blocking=True)
        with autocast(cfg, device):
            if unlabeled is not None:
                weak_strong = unlabeled.to(device, non_blocking=True).transpose(0, 1).flatten(0, 1)
                logits_all = self.model(to_device(torch.cat([x, weak_strong]), device, cfg.channels_last))
                logits = logits_all[:len(x)]
                weak, strong = logits_all[len(x):].chunk(2)
                sup = self.criterion(logits, y)
                cons = uda_consistency(weak, strong, cfg.uda_temperature, cfg.uda_threshold)
                loss = sup + cfg.uda_weight * cons
            else:
                logits = self.model(x)
                loss = sup = self.criterion(logits, y)
                cons = torch.zeros((), device=device)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), cfg.grad_clip, mode=cfg.grad_clip_mode)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), sup.detach(), cons.detach(), logits.detach()
