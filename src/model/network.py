"""The classifier: a backbone, GeM or average pooling, a neck, and joint or per-task heads, each ArcFace (cosine)
or linear.

It takes uint8 NCHW images and normalises them itself, so loaders move 4x fewer bytes and every
caller (training, inference, benchmarks) shares one preprocessing path. `forward(x, output=True)` returns an Output:
18-class logits ready for softmax and, where the age head learns the exact age, the age in years (plain `forward(x)`
the logits alone, as a loss or Grad-CAM takes them). The logits are s*cosine
for the joint ArcFace head (its margin lives in the loss); with per-task heads they are the sum of the mask, gender
and age log-softmaxes, so their softmax is p(mask)*p(gender)*p(age) and everything downstream (OOF files,
ensembles, pseudo labels, TTA) treats both kinds of run alike. Training asks for the raw head logits
(`per_head=True`): the ArcFace margin needs each head's own cosines, which the 18-class logits no longer hold.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.errors import ModelError
from src.labels import NUM_CLASSES, TASK_NAMES, TASK_SIZES
from src.model.age import number_head
from src.model.backbones import log_once, map_layer, probe_features, size_error


class Output(NamedTuple):
    """What the network says of a batch: 18-class logits (..., 18) and, from an age head that learns the exact age,
    the age in years (...,), else None. A tuple, so DDP, torch.compile and the ONNX tracer pass it through."""
    logits: torch.Tensor
    years: torch.Tensor | None = None

    def map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Output:
        """f applied to each tensor (a device move, a row order, a reshape)."""
        return Output(f(self.logits), None if self.years is None else f(self.years))

    @staticmethod
    def cat(parts: list[Output], dim: int) -> Output:
        years = [p.years for p in parts]
        return Output(torch.cat([p.logits for p in parts], dim),
                      None if any(y is None for y in years) else torch.cat(years, dim))


class GeM(nn.Module):
    """Generalised mean pooling with a trainable exponent p (p=1 is average pooling)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.float().clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p).flatten(1)


class CosineHead(nn.Module):
    """ArcMarginProduct without the margin: s * cos(embedding, class centre)."""

    def __init__(self, dim: int, num_classes: int, s: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.s = s

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):  # cosines need fp32: s=45 magnifies bf16 error
            return self.s * F.linear(F.normalize(x.float()), F.normalize(self.weight.float()))


def make_neck(kind: str, in_dim: int, dim: int, dropout: float) -> nn.Sequential:
    layers = [nn.Linear(in_dim, dim), nn.BatchNorm1d(dim)]
    if kind in ("prelu", "prelu_dropout"):
        layers.append(nn.PReLU())
    if kind == "prelu_dropout":
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def make_head(kind: str, dim: int, num_classes: int, arc_s: float) -> nn.Module:
    return CosineHead(dim, num_classes, arc_s) if kind == "arcface" else nn.Linear(dim, num_classes)


def joint_logits(head_logits: tuple) -> torch.Tensor:
    """18-class logits from the head outputs: the joint head's own, or log p(mask) + log p(gender) + log p(age)
    laid out as class = 6 * mask + 3 * gender + age, whose softmax is the product of the task softmaxes. A number
    age head's first three columns are its log P(band) (src/model/age.py)."""
    if len(head_logits) == 1:
        return head_logits[0]
    mask, gender, age = (F.log_softmax(z[:, :n].float(), dim=1) for z, n in zip(head_logits, TASK_SIZES))
    return (mask[:, :, None, None] + gender[:, None, :, None] + age[:, None, None, :]).flatten(1)


class MaskClassifier(nn.Module):
    """`backbone` (a timm model built for `size`, H x W) with the pooling, neck and heads; `model_name` names it
    in messages."""

    def __init__(self, backbone: nn.Module, model_name: str, size: tuple[int, int], *, mean, std,
                 pooling: str = "gem", gem_p: float = 3.0, neck: str = "prelu", neck_dim: int = 512,
                 neck_dropout: float = 0.2, head: str = "arcface", heads: str = "joint", msd_count: int = 16,
                 msd_p: float = 0.2, arc_s: float = 45.0, age_head: str = "band", channels_last: bool = True):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)
        self.backbone = backbone
        try:
            self.layout, dim, unused = probe_features(self.backbone, *size)
        except Exception as e:  # timm reports a size it cannot take in many ways (asserts, shape errors)
            raise ModelError(size_error(model_name, size, e)) from None
        # Parameters that never see a gradient would stall DDP's reduction; frozen, DDP and the optimizer skip them.
        for name in unused:
            self.backbone.get_parameter(name).requires_grad_(False)
        if unused:
            log_once(f"{model_name}: {len(unused)} parameter tensors after its features (e.g. {unused[0]}) are unused "
                     f"and frozen")
        if self.layout == "pooled":
            self.pool = None
            own = getattr(self.backbone, "global_pool", None)
            log_once(f"{model_name} gives no spatial map at {size[0]}x{size[1]}: pooling={pooling} "
                     f"does not apply; its own pooling makes the features (forward_head"
                     f"{f', global_pool={own!r}' if isinstance(own, str) and own else ''})")
        else:
            self.pool = GeM(gem_p) if pooling == "gem" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.features = nn.Identity()  # the backbone's last feature map passes here: where Grad-CAM hooks in
        self.neck = make_neck(neck, dim, neck_dim, neck_dropout)
        self.number_head = number_head(age_head)  # None: the age head of the three bands
        if heads == "joint":
            if self.number_head is not None:
                raise ModelError(f"age_head {age_head} is an age head of heads per_task, not of the joint 18-way head")
            self.head = make_head(head, neck_dim, NUM_CLASSES, arc_s)
        else:
            self.head = nn.ModuleDict({task: self.number_head(neck_dim) if task == "age" and self.number_head
                                       else make_head(head, neck_dim, n, arc_s)
                                       for task, n in zip(TASK_NAMES, TASK_SIZES)})
        self.dropouts = nn.ModuleList(nn.Dropout(msd_p) for _ in range(msd_count))
        # channels_last speeds up convolutions; token and NHWC models gain nothing from it.
        self.channels_last = channels_last and self.layout == "NCHW"
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def embed(self, x):
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        x = (x.float() - self.mean) / self.std
        features = self.features(self.backbone.forward_features(x))
        if self.layout == "pooled":
            pooled = self.backbone.forward_head(features, pre_logits=True)
        else:
            pooled = self.pool(features.permute(0, 3, 1, 2) if self.layout == "NHWC" else features)
        return self.neck(pooled)

    def heads(self, emb) -> tuple:
        if isinstance(self.head, nn.ModuleDict):
            return tuple(head(emb) for head in self.head.values())
        return (self.head(emb),)

    @property
    def explained_layer(self) -> nn.Module:
        """The module whose output Grad-CAM explains (src/model/backbones.py's map_layer, else the feature map)."""
        return map_layer(self.backbone, self.layout) or self.features

    @property
    def tells_years(self) -> bool:
        """Whether the Output holds the age in years (a number age head)."""
        return self.number_head is not None

    def forward(self, x, per_head: bool = False, output: bool = False):
        """The 18-class logits (what a loss or Grad-CAM reads); with `output` the Output, logits and years (what every
        prediction reads); with `per_head` the raw outputs of each head (the joint one, or mask, gender, age)."""
        emb = self.embed(x)
        if self.training and len(self.dropouts):
            out = tuple(torch.stack(z).mean(0) for z in zip(*(self.heads(d(emb)) for d in self.dropouts)))
        else:
            out = self.heads(emb)
        if per_head:
            return out
        if not output:
            return joint_logits(out)
        return Output(joint_logits(out), self.number_head.years_of(out[-1]).float() if self.tells_years else None)


def output_of(model: nn.Module, x: torch.Tensor) -> Output:
    """A model's Output of a batch: the classifier's own (through a torch.compile wrapper too), or the logits of any
    other module that gives 18-class logits."""
    return model(x, output=True) if hasattr(model, "tells_years") else Output(model(x))
