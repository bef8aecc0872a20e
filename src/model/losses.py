"""Losses: ArcFace margin around an inner CE, focal, soft macro-F1 or CE + soft macro-F1 loss, joint or per-task,
class weights, the UDA consistency term and the distillation term.

Nothing here names a device: weights are buffers and follow the module's `.to()`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from src.labels import AGES, NUM_CLASSES, TASK_SIZES, decode_label, target_label, target_years, task_probabilities
from src.model.age import AgeLoss, tells_years
from src.model.network import Output


def class_weights(labels, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """1/log1p(count) per class, normalised to sum to num_classes; an absent class gets the largest weight."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes).astype(np.float64)
    w = np.zeros(num_classes)
    present = counts > 0
    w[present] = 1.0 / np.log1p(counts[present])
    w[~present] = w[present].max() if present.any() else 1.0
    return torch.tensor(w * num_classes / w.sum(), dtype=torch.float32)


class FocalLoss(nn.Module):
    """alpha * (1 - p_t)^gamma * CE, reduced like weighted CE (sum w_t * l / sum w_t)."""

    def __init__(self, gamma: float, alpha: float, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha
        self.register_buffer("weight", weight)

    def forward(self, logits, target):
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -self.alpha * (1 - logp.exp()).pow(self.gamma) * logp
        w = self.weight[target] if self.weight is not None else torch.ones_like(loss)
        return (w * loss).sum() / w.sum()


class SoftF1Loss(nn.Module):
    """1 - the batch's macro-F1 computed on softmax probabilities instead of hard predictions: per class
    tp = sum p*y, fp = sum p*(1-y), fn = sum (1-p)*y and F1 = 2tp / (2tp + fp + fn), averaged over the classes
    (weighted by `weight` when given). Macro-F1 weighs a rare class like a common one; so does this loss."""

    def __init__(self, weight: torch.Tensor | None = None, eps: float = 1e-7):
        super().__init__()
        self.register_buffer("weight", weight)
        self.eps = eps

    def forward(self, logits, target):
        p = F.softmax(logits.float(), dim=1)
        y = F.one_hot(target, p.shape[1]).float()
        tp, fp, fn = (p * y).sum(0), (p * (1 - y)).sum(0), ((1 - p) * y).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        w = self.weight if self.weight is not None else torch.ones_like(f1)
        return 1 - (w * f1).sum() / w.sum()


class CeF1Loss(nn.Module):
    """Cross-entropy (class weights, label smoothing) + f1_weight * the soft macro-F1 loss."""

    def __init__(self, f1_weight: float, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
        self.f1, self.f1_weight = SoftF1Loss(weight), f1_weight

    def forward(self, logits, target):
        return self.ce(logits, target) + self.f1_weight * self.f1(logits, target)


class ArcMargin(nn.Module):
    """Replace the target logit s*cos(theta) by s*cos(theta + m).

    Where theta + m would pass pi, cos(theta + m) stops decreasing; there the usual fallback
    s*(cos(theta) - m*sin(m)) keeps the target logit monotonic in theta.
    """

    def __init__(self, s: float, m: float):
        super().__init__()
        self.s, self.m = s, m
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th, self.mm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def forward(self, logits, target):
        cos = (logits.float() / self.s).clamp(-1, 1)
        sin = (1 - cos.pow(2)).clamp_min(0).sqrt()
        phi = cos * self.cos_m - sin * self.sin_m
        phi = torch.where(cos > self.th, phi, cos - self.mm)
        one_hot = F.one_hot(target, cos.shape[1]).bool()
        return self.s * torch.where(one_hot, phi, cos)


class HeadLoss(nn.Module):
    """The loss of one head: the ArcFace margin for an arcface head (arc_m > 0), then CE (with label smoothing),
    focal, soft macro-F1, or CE + f1_weight * soft macro-F1."""

    def __init__(self, head: str, loss: str, weight: torch.Tensor | None = None, *, arc_s: float = 45.0,
                 arc_m: float = 0.5, focal_gamma: float = 5.0, focal_alpha: float = 0.25,
                 label_smoothing: float = 0.0, f1_weight: float = 1.0):
        super().__init__()
        self.margin = ArcMargin(arc_s, arc_m) if head == "arcface" and arc_m > 0 else None
        if loss == "focal":
            self.inner = FocalLoss(focal_gamma, focal_alpha, weight)
        elif loss == "f1":
            self.inner = SoftF1Loss(weight)
        elif loss == "ce_f1":
            self.inner = CeF1Loss(f1_weight, weight, label_smoothing)
        else:
            self.inner = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def forward(self, logits, target, margin: bool = True):
        if self.margin is not None and margin:
            logits = self.margin(logits, target)
        return self.inner(logits.float(), target)


class Criterion(nn.Module):
    """The training loss: one HeadLoss for the joint head, or task_weights x (mask, gender, age) losses for
    per-task heads, each with class weights (when `class_weighted`) from its own training labels.

    The target is always the 18-class training label; per-task heads decode it, so the age filter (already in
    the training labels) reaches the age head only. The output is the model's `per_head=True` tuple in training.
    Given 18-class logits instead (validation), a per-task criterion takes each task's log-probabilities by
    marginalising, which is exact for the probabilities but has lost each head's raw cosines: there the
    ArcFace margin is left out, so a per-task val_loss is the inner loss of the predicted probabilities.
    `head_options` go to each HeadLoss (arc_s, arc_m, focal_gamma, focal_alpha, label_smoothing, f1_weight).
    """

    def __init__(self, heads: str, head: str, loss: str, train_labels=None, class_weighted: bool = True,
                 task_weights=(1.0, 1.0, 1.0), age_head: str = "band", age_sigma: float = 3.0, **head_options):
        super().__init__()
        self.per_task = heads == "per_task"
        sizes = list(TASK_SIZES) if self.per_task else [NUM_CLASSES]
        targets = decode_label(np.asarray(train_labels)) if self.per_task and train_labels is not None \
            else [train_labels] * len(sizes)
        self.losses = nn.ModuleList(
            AgeLoss(age_head, age_sigma) if self.per_task and task == 2 and tells_years(age_head) else
            HeadLoss(head, loss, class_weights(t, n) if class_weighted and train_labels is not None else None,
                     **head_options)
            for task, (t, n) in enumerate(zip(targets, sizes)))
        self.task_weights = list(task_weights) if self.per_task else [1.0]

    def forward(self, out: Output | torch.Tensor | tuple, target):
        """`out`: the model's Output or 18-class logits (validation), or its per-head tuple (training). `target`:
        training targets (labels.encode_target: the label and, where known, the exact age) or labels."""
        logits = out.logits if isinstance(out, Output) else out if isinstance(out, torch.Tensor) else None
        if logits is None:
            return self.weighted(out, target, margin=True)
        if not self.per_task:
            return self.losses[0](logits, target_label(target))
        return self.weighted(task_log_probs(logits), target, margin=False)

    def weighted(self, head_logits, target, margin: bool):
        label = target_label(target)
        targets = decode_label(label) if self.per_task else (label,)
        total = 0.0
        for w, loss, z, t in zip(self.task_weights, self.losses, head_logits, targets):
            if not isinstance(loss, AgeLoss):
                total = total + w * loss(z, t, margin)
            elif margin:  # a number head's own outputs: its loss on the exact age (or the band where none is known)
                years = target_years(target)
                total = total + w * loss(z, torch.where(years >= AGES[0], years.float(), torch.nan), t)
            else:  # 18-class logits: the band's log-probability is what is left of the head
                total = total + w * F.nll_loss(z, t)
        return total


def task_log_probs(logits: torch.Tensor) -> tuple:
    """log p(mask), log p(gender), log p(age) of 18-class logits, by marginalising the others out."""
    logp = F.log_softmax(logits.float(), dim=1).view(-1, *TASK_SIZES)
    return logp.logsumexp((2, 3)), logp.logsumexp((1, 3)), logp.logsumexp((1, 2))


def uda_consistency(logits_weak, logits_strong, temperature: float = 1.0, threshold: float = 0.0):
    """Mean over the batch of KL(p_weak || p_strong); the weak side is a detached, optionally sharpened target.

    Samples whose weak-view confidence is below `threshold` contribute zero.
    """
    target = F.softmax(logits_weak.detach().float() / temperature, dim=1)
    log_target = F.log_softmax(logits_weak.detach().float() / temperature, dim=1)
    kl = (target * (log_target - F.log_softmax(logits_strong.float(), dim=1))).sum(1)
    keep = (F.softmax(logits_weak.detach().float(), dim=1).max(1).values >= threshold).float()
    return (kl * keep).mean()


def teacher_targets(probs: torch.Tensor, temperature: float, per_task: bool) -> tuple:
    """The teachers' (N, 18) probabilities as the KL's targets: each task's (mask, gender, age) for per-task heads,
    else the 18 classes; each tempered, softmax(log p / T)."""
    parts = task_probabilities(probs.float()) if per_task else (probs.float(),)
    return tuple(F.softmax(p.clamp_min(1e-12).log() / temperature, dim=1) for p in parts)


def distill_kl(logits: torch.Tensor, targets: tuple, temperature: float, task_weights=(1.0, 1.0, 1.0)):
    """T^2 x KL(teacher_T || student_T), summed over the rows' classes and averaged over the rows; per task (weighted
    by task_weights) when `targets` holds the three tasks' (teacher_targets). The student's side is its 18-class
    logits, marginalised per task: exact for per-task heads, whose joint logits are the heads' log-probabilities."""
    logps = task_log_probs(logits) if len(targets) == 3 else (logits.float(),)
    weights = task_weights if len(targets) == 3 else (1.0,)
    total = 0.0
    for w, logp, target in zip(weights, logps, targets):
        student = F.log_softmax(logp / temperature, dim=1)
        total = total + w * F.kl_div(student, target, reduction="batchmean")
    return temperature ** 2 * total
