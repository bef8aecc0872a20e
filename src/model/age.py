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

Each kind is one subclass of AgeHead with one interface: its layers and `raw` outputs, `summary` (log P(band) and the
age in years) and `loss`. A subclass names its kind (`class X(AgeHead, kind="x")`), and `number_head(kind)` is the
one place a setting's name becomes the class; a new kind is a subclass here and its name in the config's AGE_HEADS.
A head's output row is [log P(band) for the 3 bands, the age in years, its own raw outputs]: the first three are
what per-task decisions multiply, the fourth what cut points decide on. A training row whose exact age is unknown (a
pseudo label) is trained on its band alone: the boundaries, ages or interval that its band leaves open are left out.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from src.labels import AGES, BAND_CUTS

YEARS = torch.arange(AGES[0], AGES[1] + 1, dtype=torch.float32)  # the ages a head tells apart
BOUNDARIES = YEARS[:-1]  # ordinal: P(age > t) for each of these
OUT = 4  # columns before a head's raw outputs: log P(band) x 3, the age in years
SCALE = 10.0  # regression works in tens of years around CENTRE
CENTRE = (AGES[0] + AGES[1]) / 2


def band_of_years(years: torch.Tensor) -> torch.Tensor:
    """The band of whole ages: 0 below BAND_CUTS[0], 1 below BAND_CUTS[1], else 2."""
    return (years >= BAND_CUTS[0]).long() + (years >= BAND_CUTS[1]).long()


def band_interval(band: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lowest, highest) whole age of each band within AGES."""
    lows = torch.tensor([AGES[0], BAND_CUTS[0], BAND_CUTS[1]], device=band.device)
    highs = torch.tensor([BAND_CUTS[0] - 1, BAND_CUTS[1] - 1, AGES[1]], device=band.device)
    return lows[band], highs[band]


class AgeHead(nn.Module):
    """A number head on the embedding. Subclasses give `raw` (their own outputs), `summary` and `loss`; `forward`
    lays out the row that the per-task decisions and the loss read."""
    kinds: ClassVar[dict[str, type[AgeHead]]] = {}

    def __init_subclass__(cls, kind: str, **kwargs):
        super().__init_subclass__(**kwargs)
        AgeHead.kinds[kind] = cls

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def summary(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P(band) of each band, the expected age in years) of the raw outputs."""
        raise NotImplementedError

    @staticmethod
    def loss(raw: torch.Tensor, years: torch.Tensor, known: torch.Tensor, band: torch.Tensor,
             sigma: float) -> torch.Tensor:
        """Each row's loss: `years` clamped into AGES (any value where not `known`), `band` its band."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # probabilities of 43 ages need fp32
            raw = self.raw(x.float())
            bands, years = self.summary(raw)
            return torch.cat([bands.clamp_min(1e-12).log(), years[:, None], raw], 1)

    @staticmethod
    def years_of(row: torch.Tensor) -> torch.Tensor:
        """The age in years of a head's output rows."""
        return row[:, OUT - 1]


def number_head(kind: str) -> type[AgeHead] | None:
    """The head class of an age_head setting: None for band (the plain 3-way head of its task)."""
    return AgeHead.kinds.get(kind)


def tells_years(kind: str) -> bool:
    """Whether an age_head setting learns the exact age (and so gives the age in years, decided by cut points)."""
    return number_head(kind) is not None


class Ordinal(AgeHead, kind="ordinal"):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Linear(dim, 1, bias=False)
        self.first = nn.Parameter(torch.zeros(1))  # threshold of the first boundary
        self.steps = nn.Parameter(torch.full((len(BOUNDARIES) - 1,), -3.0))  # softplus: how much each falls

    def raw(self, x):  # falling thresholds: P(age > t) can only fall with t
        return self.weight(x) + torch.cat([self.first, self.first - torch.cumsum(F.softplus(self.steps), 0)])

    @staticmethod
    def summary(raw):
        above = torch.sigmoid(raw)  # P(age > t), falling with t
        i, j = BAND_CUTS[0] - 1 - AGES[0], BAND_CUTS[1] - 1 - AGES[0]  # P(age > 29), P(age > 59)
        return torch.stack([1 - above[:, i], above[:, i] - above[:, j], above[:, j]], 1), AGES[0] + above.sum(1)

    @staticmethod
    def loss(raw, years, known, band, sigma):
        boundaries = BOUNDARIES.to(raw.device)
        low, high = band_interval(band)
        target = (years[:, None] > boundaries).float()
        # an unknown age: its band fixes the boundaries outside it; those inside stay open
        open_ = ~known[:, None] & (boundaries >= low[:, None]) & (boundaries < high[:, None])
        target = torch.where(known[:, None], target, (boundaries < low[:, None]).float())
        return (F.binary_cross_entropy_with_logits(raw, target, reduction="none") * (~open_)).sum(1)


class Distribution(AgeHead, kind="distribution"):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, len(YEARS))

    def raw(self, x):
        return self.linear(x)

    @staticmethod
    def summary(raw):
        p = F.softmax(raw, 1)
        band = band_of_years(YEARS.to(raw.device))
        return torch.stack([p[:, band == b].sum(1) for b in range(3)], 1), p @ YEARS.to(raw.device)

    @staticmethod
    def loss(raw, years, known, band, sigma):
        ages = YEARS.to(raw.device)
        low, high = band_interval(band)
        gauss = torch.exp(-0.5 * ((ages[None] - years[:, None]) / sigma) ** 2)
        inside = ((ages[None] >= low[:, None]) & (ages[None] <= high[:, None])).float()
        target = torch.where(known[:, None], gauss, inside)
        target = target / target.sum(1, keepdim=True)
        return (target * (target.clamp_min(1e-12).log() - F.log_softmax(raw, 1))).sum(1)


def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # erf, not ndtr: ONNX has an Erf operator


def regression_parts(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the age in years, its spread in years) of a regression head's raw outputs."""
    return CENTRE + SCALE * raw[:, 0], SCALE * F.softplus(raw[:, 1]) + 0.1


class Regression(AgeHead, kind="regression"):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2)  # the age (in SCALE around CENTRE) and the log of its spread

    def raw(self, x):
        return self.linear(x)

    @staticmethod
    def summary(raw):
        mean, spread = regression_parts(raw)
        low = normal_cdf((BAND_CUTS[0] - 0.5 - mean) / spread)
        high = normal_cdf((BAND_CUTS[1] - 0.5 - mean) / spread)
        return torch.stack([low, high - low, 1 - high], 1), mean

    @staticmethod
    def loss(raw, years, known, band, sigma):
        mean, spread = regression_parts(raw)
        low, high = band_interval(band)
        # an unknown age: how far the number lies outside its band's interval
        miss = torch.where(known, mean - years, (mean - high).clamp_min(0) - (low - mean).clamp_min(0))
        number = F.smooth_l1_loss(miss / SCALE, torch.zeros_like(miss), reduction="none")
        nll = torch.log(spread) + 0.5 * ((years - mean.detach()) / spread) ** 2 + 0.5 * math.log(2 * math.pi)
        return number + torch.where(known, nll, torch.zeros_like(nll))


class AgeLoss(nn.Module):
    """The loss of a number head of kind `kind`, mean over the rows. `years` is each row's age, or NaN where only its
    `band` is known."""

    def __init__(self, kind: str, sigma: float = 3.0):
        super().__init__()
        self.head, self.sigma = number_head(kind), sigma

    def forward(self, out: torch.Tensor, years: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(years)
        years = torch.where(known, years, torch.zeros_like(years)).clamp(AGES[0], AGES[1])
        return self.head.loss(out[:, OUT:].float(), years, known, band, self.sigma).mean()
