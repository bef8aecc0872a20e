"""The checkpoint layout, in one place: a fold's resumable state (last.pt) and its best-epoch weights.

Every file holds only tensors and plain values, so `torch.load(weights_only=True)` reads it, and is
written atomically. Training, resume and inference all go through these functions.
"""
from __future__ import annotations

import pickle
import random
import zipfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from src.errors import CheckpointError, first_line
from src.run.atomic import save_torch
from src.run.rundir import CONFIG

FOR_RESUME = "delete it to restart the fold from scratch (its best_*.pt stay usable by infer)"
FOR_INFER = "choose another --checkpoint (best_f1, best_loss, best_acc or last)"


def load_tensors(path: Path, error: type, where: str, kind: str, what_to_do: str, mmap: bool = False):
    """torch.load restricted to tensors and plain values; a bad file is one `error` line: `where`, what is wrong
    with the `kind` of file, and what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise error(f"{where}: holds objects other than tensors and plain values, so it was not loaded, "
                    f"for safety; {what_to_do}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise error(f"{where}: unreadable or truncated {kind} ({first_line(e)}); {what_to_do}") from None


def read(path: Path, what_to_do: str, mmap: bool = False) -> dict:
    """A maskcls checkpoint's dict; a bad file is one line: the file, what is wrong, and what to do."""
    state = load_tensors(path, CheckpointError, str(path), "checkpoint", what_to_do, mmap)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a maskcls checkpoint (no model weights); {what_to_do}")
    return state


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
    rng: dict | list  # RNG states; under torchrun a list, one per rank
    finished: bool
    ema: dict | None = None  # the weight average's state when cfg.ema is on

    def save(self, path: Path):
        save_torch(asdict(self), path)

    @classmethod
    def load(cls, path: Path) -> FoldState:
        state = read(path, FOR_RESUME)
        missing = [f.name for f in fields(cls) if f.name not in state and f.default is MISSING]
        if missing:
            raise CheckpointError(f"{path}: not a resumable last.pt (missing {', '.join(missing)}); {FOR_RESUME}")
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})


def save_best(path: Path, model_state: dict, epoch: int, metrics: dict, monitor: str):
    """best_<metric>.pt: the weights of the epoch where `monitor` was best, with that epoch's metrics."""
    save_torch(dict(model=model_state, epoch=epoch, metrics=metrics, monitor=monitor), path)


def load_weights(path: Path) -> dict:
    """The model state dict of any checkpoint kind: the weight average's for a last.pt of an EMA run (best_*
    files hold the average already)."""
    state = read(path, FOR_INFER)
    if state.get("ema"):
        return {k.removeprefix("module."): v for k, v in state["ema"].items()}
    return state["model"]


def load_into(model: torch.nn.Module, weights: dict, path: Path, network: str):
    """model.load_state_dict(weights); a checkpoint made by another network than the run's settings describe
    (`network`, e.g. "model resnet34") is one line naming both files."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        settings = Path(path).parent.parent / CONFIG
        raise CheckpointError(f"{path} does not match {settings} ({network}): the weights are another network's "
                              f"({detail[:120]}); restore the settings the run was trained with") from None


def saved_epoch(last: Path) -> tuple[int, bool]:
    """(the epoch a fold's last.pt saved, whether the fold finished); (-1, False) without a readable one."""
    try:
        state = read(last, FOR_RESUME, mmap=True)
        return int(state["epoch"]), bool(state.get("finished"))
    except (CheckpointError, KeyError, TypeError, ValueError):
        return -1, False


def is_finished(last_path: Path) -> bool:
    """Whether a fold's last.pt marks it finished; mmap reads the flag without the optimizer state."""
    return last_path.is_file() and bool(read(last_path, FOR_RESUME, mmap=True).get("finished"))
