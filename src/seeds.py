"""Every seed derived from the run's one `seed`, in one place: folds, ranks, loader workers, epochs and views.

Each derivation is a fixed arithmetic of its parts, so a resumed or re-run fold replays the same draws.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

FOLD_STEP, RANK_STEP = 7919, 104729  # primes: the (fold, rank) pairs never collide for realistic counts
PSEUDO_OFFSET = 1_000_033  # the pseudo-labelled part of a training set augments apart from the labelled part
UNLABELED_OFFSET = 7  # UDA's unlabelled stream
UNLABELED_EPOCH_STEP = 100_000  # the unlabelled stream of epoch e starts at sampler epoch e * this


def fold_seed(seed: int, fold: int, rank: int = 0) -> int:
    """Weights, augmentation and loader order of fold k on one rank: the same whether or not it was interrupted."""
    return seed + FOLD_STEP * fold + RANK_STEP * rank


def pseudo_seed(seed: int) -> int:
    return seed + PSEUDO_OFFSET


def unlabeled_seed(seed: int, rank: int = 0) -> int:
    return seed + UNLABELED_OFFSET + rank


def unlabeled_epoch(epoch: int) -> int:
    return epoch * UNLABELED_EPOCH_STEP


def augment_seed(seed: int, epoch: int, worker: int) -> int:
    """The augmentation RNG of one (epoch, loader worker) of a dataset seeded with `seed`."""
    return (seed * 1_000_003 + epoch * 10_007 + worker) % 2**31


def view_seed(seed: int, view: int) -> int:
    """The k-th augmentation of a multi-view transform (UDA's weak and strong views)."""
    return seed + FOLD_STEP * view


def grid_seed(seed: int) -> int:
    """GridShuffle draws apart from the pipeline it follows."""
    return seed + 1


def seed_everything(seed: int, deterministic: bool):
    """Python's, numpy's and torch's global generators from `seed`; deterministic kernels when asked."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
