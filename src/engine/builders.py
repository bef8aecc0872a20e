"""The one place that maps a config to the explicit arguments of the data, model and engine objects: every
caller (the trainer, inference, the benchmarks, the tests) builds them here, so a setting reaches its
object the same way everywhere."""
from __future__ import annotations

from pathlib import Path

import torch
from timm.utils import ModelEmaV3

from src.config.schema import (Augmentation, Crop, Data, Distillation, Loading, Loss, Model, Optimisation, Precision,
                               SemiSupervised)
from src.data import transforms
from src.data.cache import image_source
from src.data.crops import Crops, crop_boxes, detector_class
from src.data.images import FileImages
from src.data.loaders import make_loader
from src.engine.mixing import BatchMixer
from src.engine.step import DistillTerm, TrainStep, UdaTerm
from src.model.backbones import check_weights, create_backbone
from src.model.losses import Criterion
from src.model.network import MaskClassifier
from src.run.rundir import cache_dir


def input_size(cfg: Augmentation) -> tuple[int, int]:
    """The network input (H, W)."""
    return cfg.img_height, cfg.img_width


def work_size(cfg: Augmentation | Data) -> tuple[int, int]:
    """The size images are decoded and cached at."""
    return transforms.work_size(input_size(cfg), cfg.cache_margin)


def train_transform(cfg: Augmentation, preset: str | None = None) -> transforms.Augment:
    return transforms.train_transform(preset or cfg.aug, input_size(cfg), cfg.gridshuffle_p, cfg.gridshuffle_grid,
                                      cfg.gridshuffle_classes, fog_kind=cfg.fog)


def eval_transform(cfg: Augmentation) -> transforms.Augment:
    return transforms.eval_transform(input_size(cfg))


def uda_transform(cfg: Augmentation) -> transforms.Views:
    return transforms.uda_transform(input_size(cfg), cfg.fog)


def crops(cfg: Crop | Augmentation, paths, cache_dir: Path, max_pixels: int) -> Crops:
    """The crop box of each of `paths` (face boxes kept in cache_dir)."""
    return crop_boxes(cfg.crop, paths, cfg.crop_box, cfg.face_margin, cfg.img_width / cfg.img_height, cache_dir,
                      max_pixels)


def images(cfg: Data | Loading | Crop, paths, size: tuple[int, int], num_workers: int):
    """The image source of `paths` cropped as cfg.crop says, at `size`, cached as cfg.cache says."""
    cache = cache_dir(cfg.log_dir)
    boxes = crops(cfg, paths, cache, cfg.max_image_pixels).boxes
    return image_source(cfg.cache, paths, size, cfg.corrections, cache, num_workers, cfg.max_image_pixels, boxes)


def file_images(run_cfg: Crop | Augmentation | Data, paths, log_dir, max_pixels: int) -> FileImages:
    """A finished run's view of `paths` for prediction: cropped as it trained, at its work size, decoded per access;
    face boxes are kept in log_dir/cache."""
    boxes = crops(run_cfg, paths, cache_dir(log_dir), max_pixels).boxes
    return FileImages(paths, work_size(run_cfg), max_pixels, boxes)


def loader(dataset, cfg: Loading, device, batch_size: int, sampler=None, drop_last: bool = False, seed: int = 0):
    return make_loader(dataset, device, batch_size, cfg.num_workers, cfg.prefetch_factor, sampler, drop_last, seed)


def check_requirements(cfg: Model | Augmentation | Crop):
    """What a run needs beyond its data, checked before a run folder is made or replaced: the weights, and the face
    detector's package for crop=face."""
    check_weights(cfg.model, input_size(cfg), cfg.pretrained, cfg.pretrained_path)
    if cfg.crop == "face":
        detector_class()


def model(cfg: Model | Augmentation | Precision, pretrained: bool | None = None) -> MaskClassifier:
    """The classifier of a config; pretrained=False builds the bare architecture (a checkpoint fills it)."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    backbone = create_backbone(cfg.model, input_size(cfg), pretrained, cfg.pretrained_path if pretrained else "")
    return MaskClassifier(backbone, cfg.model, input_size(cfg), mean=cfg.mean, std=cfg.std, pooling=cfg.pooling,
                          gem_p=cfg.gem_p, neck=cfg.neck, neck_dim=cfg.neck_dim, neck_dropout=cfg.neck_dropout,
                          head=cfg.head, heads=cfg.heads, msd_count=cfg.msd_count, msd_p=cfg.msd_p, arc_s=cfg.arc_s,
                          age_head=cfg.age_head, channels_last=cfg.channels_last)


def forward_model(cfg: Optimisation, model: torch.nn.Module) -> torch.nn.Module:
    """What the training step calls: the model, or its torch.compile wrapper (which shares its weights)."""
    return torch.compile(model) if cfg.compile else model


def criterion(cfg: Model | Loss, train_labels=None) -> Criterion:
    return Criterion(cfg.heads, cfg.head, cfg.loss, train_labels, cfg.class_weights, cfg.task_weights,
                     age_head=cfg.age_head, age_sigma=cfg.age_sigma, arc_s=cfg.arc_s, arc_m=cfg.arc_m,
                     focal_gamma=cfg.focal_gamma, focal_alpha=cfg.focal_alpha, f1_weight=cfg.f1_weight,
                     label_smoothing=cfg.label_smoothing)


def mixer(cfg: Augmentation) -> BatchMixer | None:
    return BatchMixer(cfg.mix_prob, cfg.mix_mode, cfg.cutmix_alpha, cfg.mixup_alpha) if cfg.mix_prob > 0 else None


def ema(cfg: Optimisation, model: torch.nn.Module) -> ModelEmaV3 | None:
    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema else None


def train_step(cfg: Optimisation | Precision | Augmentation | SemiSupervised | Distillation | Loss, model, criterion,
               optimizer, device, ema=None, ema_source=None) -> TrainStep:
    uda = UdaTerm(cfg.uda_weight, cfg.uda_temperature, cfg.uda_threshold) if cfg.uda else None
    distill = DistillTerm(cfg.distill_alpha, cfg.distill_temperature, cfg.heads == "per_task",
                          tuple(cfg.task_weights)) if cfg.teacher else None
    return TrainStep(model, criterion, optimizer, device, amp=cfg.amp, mixer=mixer(cfg), grad_clip=cfg.grad_clip,
                     grad_clip_mode=cfg.grad_clip_mode, uda=uda, distill=distill, ema=ema, ema_source=ema_source)
