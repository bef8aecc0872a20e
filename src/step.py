"""The one training step: batch mixing, forward, loss (with the UDA term), backward, clipping, optimizer and
grad scaler.

The fold loop and bench/throughput.py both call `TrainStep`, so the benchmark measures the real step.
"""
from __future__ import annotations

import torch
from timm.utils import dispatch_clip_grad

from src.forward import autocast, to_device
from src.losses import uda_consistency
from src.mixing import mix_batch
from src.model import joint_logits


class TrainStep:
    """`step(x, y, unlabeled=None)` trains on one batch and returns (loss, supervised, consistency, logits).

    The model gives each head's logits (`per_head=True`), which the criterion needs for per-head ArcFace
    margins; the returned logits are the 18-class ones. `unlabeled` is a (B, 2, C, H, W) batch of weak and
    strong views; it adds cfg.uda_weight x KL. A mixed batch (cfg.mix_prob) takes the loss
    lam * L(y) + (1 - lam) * L(y_b).
    """

    def __init__(self, model, criterion, optimizer, cfg, device, ema=None, ema_source=None):
        self.model, self.criterion, self.optimizer, self.cfg, self.device = model, criterion, optimizer, cfg, device
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp == "fp16")
        # the weight average (timm ModelEmaV3) follows `ema_source`, the model without DDP or compile wrappers;
        # `steps` counts optimizer steps for its warmup and is restored on resume
        self.ema, self.ema_source, self.steps = ema, ema_source, 0

    def __call__(self, x, y, unlabeled=None):
        cfg, device = self.cfg, self.device
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        mixed = mix_batch(x, y, cfg)
        if mixed is not None:
            x = mixed.x
        with autocast(cfg, device):
            if unlabeled is not None:
                weak_strong = to_device(unlabeled, device).transpose(0, 1).flatten(0, 1)
                heads = self.model(torch.cat([x, weak_strong]), per_head=True)
                weak, strong = joint_logits(tuple(h[len(x):] for h in heads)).chunk(2)
                heads = tuple(h[:len(x)] for h in heads)
                cons = uda_consistency(weak, strong, cfg.uda_temperature, cfg.uda_threshold)
            else:
                heads = self.model(x, per_head=True)
                cons = torch.zeros((), device=device)
            sup = self.criterion(heads, y)
            if mixed is not None:
                sup = mixed.lam * sup + (1 - mixed.lam) * self.criterion(heads, mixed.y_b)
            loss = sup + cfg.uda_weight * cons if unlabeled is not None else sup
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), cfg.grad_clip, mode=cfg.grad_clip_mode)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.steps += 1
        if self.ema is not None:
            self.ema.update(self.ema_source, step=self.steps)
        return loss.detach(), sup.detach(), cons.detach(), joint_logits(heads).detach()
