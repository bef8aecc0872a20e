"""src/data/loaders.py: the loader settings arrive."""
import torch

from src.data.dataset import FaceDataset
from src.data.loaders import default_workers, make_loader


def test_loader_settings():
    import os

    cores = len(os.sched_getaffinity(0))
    assert default_workers(3) == 3 and default_workers(-1) == min(cores, 16)
    assert default_workers(-1, torch.device("cpu")) == max(min(cores, 16) // 2, 1)
    ds = FaceDataset([None] * 4)
    loader = make_loader(ds, torch.device("cpu"), 2, num_workers=1, prefetch_factor=3)
    assert loader.prefetch_factor == 3 and loader.persistent_workers and loader.num_workers == 1
    assert make_loader(ds, torch.device("cpu"), 2, num_workers=0).num_workers == 0
