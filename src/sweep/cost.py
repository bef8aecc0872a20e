"""What a trial will cost before it trains: its training photos x epochs x this machine's measured time a photo of
one training step of its model, size and batch, plus its validation passes, times what the finished trials of the
machine took against their prediction. A sweep with trial_minutes prunes a trial predicted over them before it
trains (worker.py)."""
from __future__ import annotations

import functools
import json
import socket
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from src.config.schema import TrainConfig
from src.data.tables import load_train
from src.engine import builders
from src.engine.fold import dropped
from src.engine.forward import forward_views
from src.engine.optim import build_optimizer
from src.labels import AGES, NUM_CLASSES, encode_target

# the settings that change the time of a step; trials that share them share one measurement
STEP_KEYS = ("model", "img_height", "img_width", "batch_size", "infer_batch_size", "heads", "head", "age_head", "neck",
             "neck_dim", "msd_count", "channels_last", "amp", "compile", "optimizer", "ema", "mix_prob")
MEASURE_SECONDS = 3.0  # each of the two steps is timed over at least this long (and 2 calls) after a warm-up call


@dataclass(frozen=True)
class StepTimes:
    """Seconds a photo on this machine: one training step (forward, loss, backward, update, EMA) and validation."""
    train: float
    val: float


def step_key(cfg: TrainConfig, device: torch.device) -> str:
    """The measurement a trial needs: this machine, its threads and device, and the settings of STEP_KEYS."""
    settings = {k: getattr(cfg, k) for k in STEP_KEYS}
    return json.dumps([socket.gethostname(), device.type, torch.get_num_threads(), settings], sort_keys=True)


def timed_per_call(call, seconds: float = MEASURE_SECONDS) -> float:
    """Seconds a call, after one warm-up call: at least 2 calls and `seconds` in all."""
    call()
    synchronize()  # the warm-up's queued GPU work is not the timed calls'
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        call()
        calls += 1
    synchronize()
    return (time.perf_counter() - start) / calls


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_steps(cfg: TrainConfig, device: torch.device, seconds: float = MEASURE_SECONDS) -> StepTimes:
    """The trainer's own step (src/engine/step.py) and validation forward on random photos in memory: the model's
    share of an epoch, which bounds it where the loader keeps up (bench/RESULTS.md#throughput)."""
    model = builders.model(cfg, pretrained=False).to(device).train()
    forward = builders.forward_model(cfg, model)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, NUM_CLASSES, (cfg.batch_size,), generator=generator).numpy()
    targets = torch.as_tensor(encode_target(labels, np.full(len(labels), AGES[0])))
    step = builders.train_step(cfg, forward, builders.criterion(cfg, labels).to(device), build_optimizer(cfg, model),
                               device, builders.ema(cfg, model), model)
    photos = torch.randint(0, 256, (max(cfg.batch_size, cfg.infer_batch_size), 3, cfg.img_height, cfg.img_width),
                           dtype=torch.uint8, generator=generator)
    train = timed_per_call(lambda: step(photos[:cfg.batch_size], targets), seconds) / cfg.batch_size
    model.eval()
    val = timed_per_call(lambda: forward_views([model], photos[:cfg.infer_batch_size], device, "none", cfg.amp),
                         seconds) / cfg.infer_batch_size
    return StepTimes(train, val)


def fold_photos(cfg: TrainConfig) -> list[tuple[int, int]]:
    """(training, validation) photos of each fold the run trains, split as the trainer splits them."""
    return split_counts(str(cfg.data_dir), cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed, cfg.drop_ages,
                        cfg.fold)


@functools.lru_cache(maxsize=16)
def split_counts(data_dir: str, corrections: str, age_filter: int, n_folds: int, seed: int, drop_ages: str,
                 fold: str) -> list[tuple[int, int]]:
    """fold_photos' counts, read once per split for a worker's many draws (the data does not change under a sweep)."""
    table = load_train(data_dir, corrections, age_filter, n_folds, seed)
    folds, left_out = table["fold"].to_numpy(), dropped(table, drop_ages)
    if fold == "full":  # one model on everyone, nothing validated
        return [(int((~left_out).sum()), 0)]
    trained = range(n_folds) if fold == "all" else [int(fold)]
    return [(int(((folds != k) & ~left_out).sum()), int((folds == k).sum())) for k in trained]


def validations(epochs: int, val_every: int) -> int:
    """The epochs a fold validates: every val_every-th and the last (src/engine/epoch.py)."""
    return sum(1 for e in range(epochs) if (e + 1) % val_every == 0 or e == epochs - 1)


def calibration(pairs: list[tuple[float, float]]) -> float:
    """The median of measured / predicted over finished trials of this machine ((predicted, measured) pairs): what
    the step times leave out (start-up, the image cache, the epochs' writes, a loader slower than the model) as a
    factor; 1 before any trial has finished."""
    ratios = [measured / predicted for predicted, measured in pairs if predicted > 0]
    return statistics.median(ratios) if ratios else 1.0


def predicted_seconds(cfg: TrainConfig, photos: list[tuple[int, int]], times: StepTimes) -> float:
    """Every fold's epochs at full length (early stopping can only shorten them) and its validation passes; a batch
    that does not fill is dropped, as the trainer's loader drops it."""
    total = 0.0
    for n_train, n_val in photos:
        trained = n_train // cfg.batch_size * cfg.batch_size if n_train > cfg.batch_size else n_train
        total += cfg.epochs * trained * times.train + validations(cfg.epochs, cfg.val_every) * n_val * times.val
    return total
