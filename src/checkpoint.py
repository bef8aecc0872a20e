"""The checkpoint layout, in one place: a fold's resumable state (last.pt) and its best-epoch weights.

Every file holds only tensors and plain values, so `torch.load(weights_only=True)` reads it, and is
written atomically. Training, resume and inference all go through these functions.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from src.atomic import save_torch


def rng_state() -> dict:
    np_state = np.random.get_state()
    return dict(torch=torch.get_rng_state(), cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                numpy=[np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
                python=random.getstate())


def set_rng_state(state: dict):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


@dataclass
class FoldState:
    """last.pt: everything a fold needs to continue exactly where it stopped."""
    model: dict
    optimizer: dict
    scheduler: dict | None
    scaler: dict
    early_stopping: dict
    best: dict  # best value so far of each monitored metric
    epoch: int  # the last completed epoch
    rng: dict
    finished: bool

    def save(self, path: Path):
        save_torch(asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> FoldState:
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def save_best(path: Path, model_state: dict, epoch: int, metrics: dict, monitor: str):
    """best_<metric>.pt: the weights of the epoch where `monitor` was best, with that epoch's metrics."""
    save_torch(dict(model=model_state, epoch=epoch, metrics=metrics, monitor=monitor), path)


def load_weights(path: Path) -> dict:
    """The model state dict of any checkpoint kind."""
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def is_finished(last_path: Path) -> bool:
    """Whether a fold's last.pt marks it finished; mmap reads the flag without the optimizer state."""
    return last_path.is_file() and bool(torch.load(last_path, map_location="cpu", weights_only=True,
                                                   mmap=True)["finished"])
