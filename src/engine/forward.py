"""The one forward pass from uint8 batches to the network's Output and to Predictions, with test-time augmentation.

Validation, inference, pseudo labels and the benchmark all call `forward_views` / `predict_loader`.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from src.model.network import Output, output_of
from src.predictions import Predictions


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
def forward_views(models, x: torch.Tensor, device, tta: str, amp: str) -> Output:
    """The fp32 Output of shape (models x views, batch, ...); each model sees all views as one batch."""
    x = views(to_device(x, device), tta)
    batch = x.shape[0] // (2 if tta == "flip" else 1)
    out = []
    for model in models:
        with autocast(amp, device):
            out.append(output_of(model, x).map(lambda t: t.float().unflatten(0, (-1, batch))))
    return Output.cat(out, 0)


def probabilities(out: Output) -> torch.Tensor:
    """Mean softmax over the model x view axis of `forward_views` / `predict_loader` output: (..., classes)."""
    return F.softmax(out.logits, dim=-1).mean(-3)


def mean_prediction(out: Output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the mean softmax, the mean age in years or None) over the model x view axis of `forward_views` output."""
    return probabilities(out), None if out.years is None else out.years.mean(-2)


def predictions(out: Output) -> Predictions:
    """The Predictions of `forward_views` / `predict_loader` output, on the CPU."""
    probs, years = mean_prediction(out)
    return Predictions(probs.cpu().numpy(), None if years is None else years.cpu().numpy())


@torch.no_grad()
def predict_loader(models, loader, device, tta: str, amp: str, desc: str | None = None) -> tuple[torch.Tensor, Output]:
    """(dataset indices, the Output of shape (models x views, N, ...)) over a loader, on the CPU."""
    for m in models:
        m.eval()
    idx, outputs = [], []
    for x, _, i in tqdm(loader, desc=desc, disable=desc is None, mininterval=1, leave=False):
        outputs.append(forward_views(models, x, device, tta, amp).map(torch.Tensor.cpu))
        idx.append(i)
    return torch.cat(idx), Output.cat(outputs, 1)
