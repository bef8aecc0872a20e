"""Training samplers that work the same in one process and under torchrun."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


class DistributedWeightedSampler(Sampler):
    """WeightedRandomSampler (with replacement) drawn identically on every rank, then split by rank.

    The draw is seeded by (seed, epoch), so set_epoch() changes it and a resumed run replays it.
    """

    def __init__(self, weights, num_replicas: int, rank: int, seed: int):
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(self.weights) / num_replicas)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.num_samples * self.num_replicas, replacement=True, generator=g)
        return iter(draw[self.rank::self.num_replicas].tolist())

    def __len__(self):
        return self.num_samples


def train_sampler(kind: str, labels, num_replicas: int, rank: int, seed: int) -> Sampler:
    """Shuffled (DistributedSampler, also for one process) or weighted by inverse class frequency."""
    if kind == "weighted":
        labels = np.asarray(labels)
        counts = np.bincount(labels, minlength=labels.max() + 1)
        return DistributedWeightedSampler(1.0 / counts[labels], num_replicas, rank, seed)
    return DistributedSampler(range(len(labels)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
