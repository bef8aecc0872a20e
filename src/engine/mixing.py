"""CutMix, MixUp and half swaps of training batches, with the labels of both sources and the mixing weight.

Each mixed image pairs with the image at the mirrored batch position (timm's Mixup pairs them the same
way). The loss takes the mixed-pair form lam * L(y_a) + (1 - lam) * L(y_b), which works for every head and
loss: an ArcFace margin and the focal term need one hard target per term, so timm's soft targets (which
only plain CE takes, and where they give the same loss) are not used. Images stay uint8: the model
normalises them, and a MixUp blend is rounded to the nearest level.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from timm.data.mixup import cutmix_bbox_and_lam


@dataclass
class Mixed:
    x: torch.Tensor  # the mixed images
    y_b: torch.Tensor  # labels of the second source; the first keeps the batch's own
    lam: float  # share of the first source

    @staticmethod
    def partner(t: torch.Tensor) -> torch.Tensor:
        """Any per-row tensor of the batch as the second source's rows (the mirrored positions)."""
        return t.flip(0)


@dataclass(frozen=True)
class BatchMixer:
    """Mixes a training batch with probability `prob` as `mode` says (cutmix, mixup or halves)."""
    prob: float
    mode: str = "cutmix"
    cutmix_alpha: float = 1.0
    mixup_alpha: float = 0.2

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Mixed | None:
        """The mixed batch, or None to leave it alone. Draws come from numpy's global generator (timm's box
        sampler uses it too), seeded per process."""
        if self.prob <= 0 or np.random.rand() >= self.prob:
            return None
        other, y_b = Mixed.partner(x), Mixed.partner(y)
        if self.mode == "mixup":
            lam = float(np.random.beta(self.mixup_alpha, self.mixup_alpha))
            blend = lam * x.float() + (1 - lam) * other.float()
            return Mixed(blend.round().to(x.dtype), y_b, lam)
        out = x.clone()
        if self.mode == "halves":  # faces are centred: the left half of one with the right half of another
            half = x.shape[-1] // 2
            out[..., half:] = other[..., half:]
            return Mixed(out, y_b, half / x.shape[-1])
        lam = float(np.random.beta(self.cutmix_alpha, self.cutmix_alpha))
        (top, bottom, left, right), lam = cutmix_bbox_and_lam(x.shape, lam)  # lam becomes the area kept
        out[..., top:bottom, left:right] = other[..., top:bottom, left:right]
        return Mixed(out, y_b, float(lam))
