"""The one training step: batch mixing, forward, loss (with the UDA or the distillation term), backward, clipping,
optimizer, grad scaler and the weight average.

The fold loop and bench/throughput.py both call `TrainStep`, so the benchmark measures the real step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.utils import dispatch_clip_grad

from src.engine.forward import autocast, to_device
from src.engine.mixing import BatchMixer
from src.model.losses import distill_kl, teacher_targets, uda_consistency
from src.model.network import joint_logits


@dataclass(frozen=True)
class UdaTerm:
    """UDA's consistency loss: weight x KL(weak || strong), the weak view sharpened by temperature and masked
    below threshold confidence."""
    weight: float = 5.0
    temperature: float = 1.0
    threshold: float = 0.0


@dataclass(frozen=True)
class DistillTerm:
    """Learning the teachers: (1 - alpha) x the recipe's loss + alpha x T^2 x KL(teacher_T || student_T), the KL per
    task (weighted as the recipe's tasks) for per-task heads; unlabelled rows take the KL alone."""
    alpha: float = 0.5
    temperature: float = 1.0
    per_task: bool = False
    task_weights: tuple = (1.0, 1.0, 1.0)


class TrainStep:
    """`step(x, y, unlabeled=None, soft=None)` trains on one batch and returns (loss, supervised, consistency or KL,
    logits).

    The model gives each head's logits (`per_head=True`), which the criterion needs for per-head ArcFace
    margins; the returned logits are the 18-class ones. `unlabeled` is a (B, 2, C, H, W) batch of weak and
    strong views, for `uda`; with `distill`, a (U, C, H, W) batch of unlabelled photos, and `soft` holds the teachers'
    (B + U, 18) probabilities of both. A batch the mixer mixes takes the loss lam * L(y) + (1 - lam) * L(y_b), and
    the mixed rows' teacher targets are mixed alike.
    The weight average (timm ModelEmaV3) follows `ema_source`, the model without DDP or compile wrappers.
    """

    def __init__(self, model, criterion, optimizer, device, *, amp: str, mixer: BatchMixer | None = None,
                 grad_clip: float = 0.0, grad_clip_mode: str = "norm", uda: UdaTerm | None = None,
                 distill: DistillTerm | None = None, ema=None, ema_source=None):
        self.model, self.criterion, self.optimizer, self.device = model, criterion, optimizer, device
        self.amp, self.mixer, self.uda, self.distill = amp, mixer, uda, distill
        self.grad_clip, self.grad_clip_mode = grad_clip, grad_clip_mode
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")
        self.ema, self.ema_source = ema, ema_source
        self.steps = 0  # optimizer steps: the EMA warmup follows them

    def state_dict(self) -> dict:
        return dict(scaler=self.scaler.state_dict(), steps=self.steps)

    def load_state_dict(self, state: dict):
        self.scaler.load_state_dict(state["scaler"])
        self.steps = state["steps"]

    def __call__(self, x, y, unlabeled=None, soft=None):
        device = self.device
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        mixed = self.mixer(x, y) if self.mixer is not None else None
        if mixed is not None:
            x = mixed.x
        with autocast(self.amp, device):
            if self.distill is not None:
                heads, extra = self.learn_teachers(x, unlabeled, soft, mixed)
            elif unlabeled is not None:
                weak_strong = to_device(unlabeled, device).transpose(0, 1).flatten(0, 1)
                heads = self.model(torch.cat([x, weak_strong]), per_head=True)
                weak, strong = joint_logits(tuple(h[len(x):] for h in heads)).chunk(2)
                heads = tuple(h[:len(x)] for h in heads)
                extra = uda_consistency(weak, strong, self.uda.temperature, self.uda.threshold)
            else:
                heads = self.model(x, per_head=True)
                extra = torch.zeros((), device=device)
            sup = self.criterion(heads, y)
            if mixed is not None:
                sup = mixed.lam * sup + (1 - mixed.lam) * self.criterion(heads, mixed.y_b)
            if self.distill is not None:
                loss = (1 - self.distill.alpha) * sup + self.distill.alpha * extra
            else:
                loss = sup + self.uda.weight * extra if unlabeled is not None else sup
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            dispatch_clip_grad(self.model.parameters(), self.grad_clip, mode=self.grad_clip_mode)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.steps += 1
        if self.ema is not None:
            self.ema.update(self.ema_source, step=self.steps)
        return loss.detach(), sup.detach(), extra.detach(), joint_logits(heads).detach()

    def learn_teachers(self, x, unlabeled, soft, mixed) -> tuple:
        """(the labelled rows' head outputs, the KL term over every row) of one forward of the labelled photos and
        the unlabelled ones after them; the mixed rows' targets are mixed as their photos are."""
        term, n = self.distill, len(x)
        inputs = torch.cat([x, to_device(unlabeled, self.device)]) if unlabeled is not None else x
        heads = self.model(inputs, per_head=True)
        targets = teacher_targets(soft.to(self.device, non_blocking=True), term.temperature, term.per_task)
        if mixed is not None:
            targets = tuple(torch.cat([mixed.lam * t[:n] + (1 - mixed.lam) * mixed.partner(t[:n]), t[n:]])
                            for t in targets)
        kl = distill_kl(joint_logits(heads), targets, term.temperature, term.task_weights)
        return tuple(h[:n] for h in heads), kl
