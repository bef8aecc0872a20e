"""What training carries, in one place and typed: what every fold of a run shares (RunInputs), one fold's data,
objects and plan (Fold), and where training is (Progress). src/engine/trainer.py and fold.py build them from the
settings; src/engine/epoch.py reads them and no config."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from src.config.schema import TrainConfig
from src.labels import PROB_COLUMNS
from src.data.cache import ImageSource
from src.engine.dist import Dist
from src.model.losses import Criterion
from src.run.checkpoint import FOR_RESUME, read
from src.run.records import RunRecords
from src.run.rundir import RunDir
from src.run.saver import FoldObjects, FoldSaver

# after each epoch's last.pt, on rank 0: (fold, epoch, metrics ({} for an epoch not validated), the fold's last epoch)
AfterEpoch = Callable[[int, int, dict, bool], None]


@dataclass
class Progress:
    """Where training is, for the line an interruption prints: the fold, its epoch, and its last.pt."""
    fold: int | None = None
    epoch: int = 0
    last: Path | None = None

    def stopped(self, signal_name: str) -> str:
        if self.fold is None:
            return f"interrupted ({signal_name}) before a fold started; nothing of the run's training was lost"
        saved = read(self.last, FOR_RESUME, mmap=True)["epoch"] if self.last and self.last.is_file() else None
        kept = f"last.pt (epoch {saved}) is intact" if saved is not None else "no epoch of it was saved yet"
        return f"interrupted ({signal_name}) in fold {self.fold}, epoch {self.epoch}: {kept}; continue with --resume"


@dataclass(frozen=True)
class Teaching:
    """What a distilling student learns (src/predict/distill.py makes it): the teachers' probabilities of each
    training photo (out of fold) and of each unlabelled photo (their ensemble), by path."""
    train: pd.DataFrame  # path, p0..p17
    unlabeled: pd.DataFrame  # path, p0..p17; no rows where the student takes no unlabelled photos

    def train_probs(self, paths) -> torch.Tensor:
        """(len(paths), 18) probabilities of training photos, in the order of `paths`."""
        probs = self.train.set_index("path").loc[list(paths), PROB_COLUMNS].to_numpy()
        return torch.as_tensor(probs, dtype=torch.float32)

    def unlabeled_probs(self) -> torch.Tensor:
        return torch.as_tensor(self.unlabeled[PROB_COLUMNS].to_numpy(), dtype=torch.float32)


@dataclass
class RunInputs:
    """What every fold of a run shares: its settings, data, image sources and writers."""
    cfg: TrainConfig
    dist: Dist
    run: RunDir
    table: pd.DataFrame  # the training photos, one row each (person, labels, fold)
    images: ImageSource
    pseudo: pd.DataFrame | None = None
    pseudo_images: ImageSource | None = None
    unlabeled_images: ImageSource | None = None
    records: RunRecords | None = None  # rank 0 only
    progress: Progress = field(default_factory=Progress)  # updated by train_fold
    after_epoch: AfterEpoch | None = None  # a sweep's pruner
    teaching: Teaching | None = None  # --teacher's probabilities


@dataclass(frozen=True)
class EpochPlan:
    """What an epoch needs of the settings, read once by build_fold."""
    epochs: int
    val_every: int  # validate every this many epochs, and always the last
    monitor: str  # early stopping's metric
    amp: str  # validation's precision


@dataclass
class FoldData:
    """A fold's training and validation batches."""
    train_ds: Dataset
    sampler: Sampler  # its set_epoch draws each epoch's order
    train_loader: DataLoader
    val_loader: DataLoader
    val_labels: torch.Tensor
    val_rows: np.ndarray  # rows of the run's table, in val_loader's order
    unlabeled: tuple[DataLoader, Sampler] | None = None  # the unlabelled stream (UDA's, or a distilling student's)
    soft: tuple[torch.Tensor, torch.Tensor] | None = None  # the teachers' probabilities of train_ds and the unlabelled


@dataclass
class Fold:
    """One fold: its data, the objects that train it, what saves it, and its plan."""
    k: int
    seed: int  # seeds.fold_seed of the run's seed, the fold and the rank: computed once
    plan: EpochPlan
    data: FoldData
    criterion: Criterion
    sched_when: str | None  # when the scheduler steps: batch, epoch, val_loss (None: there is none)
    eval_model: torch.nn.Module  # the weights that validate, are saved as best_* and predict
    objects: FoldObjects  # what last.pt holds
    saver: FoldSaver
