"""The one forward pass from uint8 batches to logits and probabilities, with test-time augmentation.

Validation, inference, pseudo labels and the benchmark all call `forward_views` / `predict_loader`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.labels import NUM_CLASSES


def autocast(amp: str, device: torch.device):
    """bf16/fp16 autocast on CUDA (amp 'bf16', 'fp16' or 'none'); on CPU AMP is off (it is slower there)."""
    if device.type == "cuda" and amp != "none":
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return contextlib.nullcontext()


def to_device(x: torch.Tensor, device) -> torch.Tensor:
    """The model picks its own memory format (channels_last for conv nets), so batches move as they are."""
    return x.to(device, non_blocking=True)


def views(x: torch.Tensor, tta: str) -> torch.Tensor:
    """The TTA views of a batch stacked along the batch axis: flip adds the horizontal mirror."""
    return torch.cat([x, x.flip(3)]) if tta == "flip" else x


@torch.no_grad()
def forward_views(models, x: torch.Tensor, device, tta: str, amp: str) -> torch.Tensor:
    """fp32 logits of shape (models x views, batch, classes); each model sees all views as one batch."""
    x = views(to_device(x, device), tta)
    out = []
    for model in models:
        with autocast(amp, device):
            logits = model(x).float()
        out.append(logits.view(-1, x.shape[0] // (2 if tta == "flip" else 1), logits.shape[-1]))
    return torch.cat(out)


def split_years(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the 18-class logits, the age in years or None) of model outputs: a run whose age head learns the exact age
    adds the age as a 19th column (src/model/network.py)."""
    if outputs.shape[-1] > NUM_CLASSES:
        return outputs[..., :NUM_CLASSES], outputs[..., NUM_CLASSES]
    return outputs, None


def probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """Mean softmax over the model x view axis of `forward_views` / `predict_loader` output: (..., classes)."""
    return F.softmax(split_years(outputs)[0], dim=-1).mean(-3)


def mean_years(outputs: torch.Tensor) -> torch.Tensor | None:
    """The mean age in years over the model x view axis of `forward_views` output, or None for band age heads."""
    years = split_years(outputs)[1]
    return None if years is None else years.mean(-2)


@torch.no_grad()
def predict_loader(models, loader, device, tta: str, amp: str, desc: str | None = None):
    """(dataset indices, logits of shape (models x views, N, classes)) over a loader, on the CPU."""
    for m in models:
        m.eval()
    idx, logits = [], []
    for x, _, i in tqdm(loader, desc=desc, disable=desc is None, mininterval=1, leave=False):
        logits.append(forward_views(models, x, device, tta, amp).cpu())
        idx.append(i)
    return torch.cat(idx), torch.cat(logits, dim=1)
