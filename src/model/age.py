"""Age heads that learn the exact age, not only its band, and their losses.

Every training folder names the person's age (AGES: 18 to 60; an age outside is clamped into it, which keeps its
band). A number head is the age head of `heads: per_task`; each gives the probability of each band, so the 18-class
probabilities (and everything built on them) stay as they are, and an age in years for decisions by cut points:

  ordinal       one cumulative logit per year boundary, P(age > t) for t = 18 .. 59, with a shared weight and
                thresholds that can only fall (CORAL; rank-consistent by construction); loss: binary CE per boundary
  distribution  a softmax over the ages 18 .. 60 against a Gaussian of width age_sigma around the true age (DLDL);
                loss: KL(target || prediction)
  regression    the age as a number and a spread: smooth L1 on the number (in tens of years), and a Gaussian
                likelihood that trains only the spread; P(band) from that Gaussian

A head's output row is [log P(band) for the 3 bands, the age in years, its own raw outputs]: the first three are
what per-task decisions multiply, the fourth what cut points decide on. A training row whose exact age is unknown (a
pseudo label) is trained on its band alone: the boundaries, ages or interval that its band leaves open are left out.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.config.schema import AGE_HEADS
from src.labels import AGES, BAND_CUTS

NUMBER_HEADS = AGE_HEADS[1:]  # the age heads that learn the exact age
YEARS = torch.arange(AGES[0], AGES[1] + 1, dtype=torch.float32)  # the ages a head tells apart
BOUNDARIES = YEARS[:-1]  # ordinal: P(age > t) for each of these
OUT = 4  # columns before a head's raw outputs: log P(band) x 3, the age in years
SCALE = 10.0  # regression works in tens of years around CENTRE
CENTRE = (AGES[0] + AGES[1]) / 2


def band_of_years(years: torch.Tensor) -> torch.Tensor:
    """The band of whole ages: 0 below BAND_CUTS[0], 1 below BAND_CUTS[1], else 2."""
    return (years >= BAND_CUTS[0]).long() + (years >= BAND_CUTS[1]).long()


class AgeHead(nn.Module):
    """A number head on the embedding: `kind` is one of NUMBER_HEADS."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "ordinal":
            self.weight = nn.Linear(dim, 1, bias=False)
            self.first = nn.Parameter(torch.zeros(1))  # threshold of the first boundary
            self.steps = nn.Parameter(torch.full((len(BOUNDARIES) - 1,), -3.0))  # softplus: how much each falls
        elif kind == "distribution":
            self.linear = nn.Linear(dim, len(YEARS))
        elif kind == "regression":
            self.linear = nn.Linear(dim, 2)  # the age (in SCALE around CENTRE) and the log of its spread
        else:
            raise ValueError(f"age head {kind!r}: choose one of {', '.join(NUMBER_HEADS)}")

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.kind == "ordinal":  # falling thresholds: P(age > t) can only fall with t
            thresholds = torch.cat([self.first, self.first - torch.cumsum(F.softplus(self.steps), 0)])
            return self.weight(x) + thresholds
        return self.linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # probabilities of 43 ages need fp32
            raw = self.raw(x)
            log_bands, years = summary(self.kind, raw)
            return torch.cat([log_bands, years[:, None], raw], 1)


def summary(kind: str, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(band) of each band, the expected age in years) of a head's raw outputs."""
    if kind == "ordinal":
        above = torch.sigmoid(raw)  # P(age > t), falling with t
        i, j = BAND_CUTS[0] - 1 - AGES[0], BAND_CUTS[1] - 1 - AGES[0]  # P(age > 29), P(age > 59)
        bands = torch.stack([1 - above[:, i], above[:, i] - above[:, j], above[:, j]], 1)
        years = AGES[0] + above.sum(1)
    elif kind == "distribution":
        p = F.softmax(raw, 1)
        band = band_of_years(YEARS.to(raw.device))
        bands = torch.stack([p[:, band == b].sum(1) for b in range(3)], 1)
        years = p @ YEARS.to(raw.device)
    else:
        mean, spread = regression_parts(raw)
        low = normal_cdf((BAND_CUTS[0] - 0.5 - mean) / spread)
        high = normal_cdf((BAND_CUTS[1] - 0.5 - mean) / spread)
        bands = torch.stack([low, high - low, 1 - high], 1)
        years = mean
    return bands.clamp_min(1e-12).log(), years


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # erf, not ndtr: ONNX has an Erf operator


def regression_parts(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the age in years, its spread in years) of a regression head's raw outputs."""
    return CENTRE + SCALE * raw[:, 0], SCALE * F.softplus(raw[:, 1]) + 0.1


def band_interval(band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) whole age of each band within AGES."""
    lows = torch.tensor([AGES[0], BAND_CUTS[0], BAND_CUTS[1]], device=band.device)
    highs = torch.tensor([BAND_CUTS[0] - 1, BAND_CUTS[1] - 1, AGES[1]], device=band.device)
    return lows[band], highs[band]


class AgeLoss(nn.Module):
    """The loss of a number head, mean over the rows. `years` is each row's age (clamped into AGES), or NaN where
    only its `band` is known."""

    def __init__(self, kind: str, sigma: float = 3.0):
        super().__init__()
        self.kind, self.sigma = kind, sigma

    def forward(self, out: torch.Tensor, years: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        raw = out[:, OUT:].float()
        known = ~torch.isnan(years)
        years = torch.where(known, years, torch.zeros_like(years)).clamp(AGES[0], AGES[1])
        low, high = band_interval(band)
        if self.kind == "ordinal":
            boundaries = BOUNDARIES.to(raw.device)
            target = (years[:, None] > boundaries).float()
            # an unknown age: its band fixes the boundaries outside it; those inside stay open
            open_ = ~known[:, None] & (boundaries >= low[:, None]) & (boundaries < high[:, None])
            target = torch.where(known[:, None], target, (boundaries < low[:, None]).float())
            loss = F.binary_cross_entropy_with_logits(raw, target, reduction="none")
            return (loss * (~open_)).sum(1).mean()
        if self.kind == "distribution":
            ages = YEARS.to(raw.device)
            gauss = torch.exp(-0.5 * ((ages[None] - years[:, None]) / self.sigma) ** 2)
            inside = ((ages[None] >= low[:, None]) & (ages[None] <= high[:, None])).float()
            target = torch.where(known[:, None], gauss, inside)
            target = target / target.sum(1, keepdim=True)
            logp = F.log_softmax(raw, 1)
            return (target * (target.clamp_min(1e-12).log() - logp)).sum(1).mean()
        mean, spread = regression_parts(raw)
        # an unknown age: how far the number lies outside its band's interval
        miss = torch.where(known, mean - years, (mean - high).clamp_min(0) - (low - mean).clamp_min(0))
        number = F.smooth_l1_loss(miss / SCALE, torch.zeros_like(miss), reduction="none")
        nll = torch.log(spread) + 0.5 * ((years - mean.detach()) / spread) ** 2 + 0.5 * math.log(2 * math.pi)
        return (number + torch.where(known, nll, torch.zeros_like(nll))).mean()
