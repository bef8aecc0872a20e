"""DataLoaders and the worker policy shared by training, validation, inference and the benchmark."""
from __future__ import annotations

import functools
import os
import sys

import torch
from torch.utils.data import DataLoader


def default_workers(requested: int, device: torch.device | None = None) -> int:
    """`requested` if >= 0. Otherwise this process's share of the usable cores, at most 16; when the model
    itself trains on the CPU it needs the cores, so workers get half of them (measured on 2 cores: one
    worker kept the pipeline at the model-only limit, two cost 2-7%)."""
    if requested >= 0:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = max(cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    if device is not None and device.type == "cpu":
        cores = max(cores // 2, 1)
    return min(cores, 16)


def quiet_broken_pipes(hook):
    """An exception hook that drops broken connections. A worker's fd-sharing thread (multiprocessing's resource
    sharer, which reports through sys.excepthook) sees one only when the main process stopped mid-transfer, as a
    Ctrl-C does; the main process reports that stop itself."""
    def quiet(kind, value, traceback):
        if not issubclass(kind, (BrokenPipeError, ConnectionResetError, EOFError)):
            hook(kind, value, traceback)
    return quiet


def init_worker(_worker_id: int, nice: bool):
    """On CPU the model's threads own the cores, so workers get a lower priority and fill the gaps."""
    sys.excepthook = quiet_broken_pipes(sys.excepthook)
    if nice:
        os.nice(10)


def make_loader(dataset, device, batch_size: int, num_workers: int = -1, prefetch_factor: int = 4, sampler=None,
                drop_last=False, seed: int = 0) -> DataLoader:
    """`num_workers` as default_workers reads it. Its own generator seeds the workers, so starting a loader never
    draws from the global RNG (which the model's dropout uses): a resumed run then replays an uninterrupted one
    with any worker count."""
    workers = default_workers(num_workers, device)
    extra = {}
    if workers > 0:
        extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor,
                     worker_init_fn=functools.partial(init_worker, nice=device.type == "cpu"))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), **extra)


def set_epoch(dataset, epoch: int):
    """Tell a FaceDataset (or each part of a ConcatDataset) the epoch, for its augmentation seed."""
    for ds in getattr(dataset, "datasets", [dataset]):
        ds.set_epoch(epoch)


def forever(loader, sampler, first_epoch: int = 0):
    """Batches without end, epoch after epoch from `first_epoch` (UDA's unlabelled stream, the benchmark)."""
    epoch = first_epoch
    while True:
        sampler.set_epoch(epoch)
        set_epoch(loader.dataset, epoch)
        yield from loader
        epoch += 1
