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


class ReportsInWorker(torch.utils.data.Dataset):
    """Each item: what the worker's sys.excepthook prints for a broken pipe and a real error, and its niceness."""
    def __len__(self):
        return 1

    def __getitem__(self, _i):
        import io
        import os
        import sys

        sys.stderr = printed_to = io.StringIO()
        for error in (BrokenPipeError("parent left"), ValueError("a real fault")):
            sys.excepthook(type(error), error, None)
        return printed_to.getvalue(), os.nice(0)


def test_a_worker_drops_broken_connections_but_reports_other_errors():
    # a Ctrl-C that lands while the main process fetches a batch's shared memory breaks the worker's fd-sharing
    # thread's connection; that thread reports through sys.excepthook
    import os

    (printed,), (nice,) = next(iter(make_loader(ReportsInWorker(), torch.device("cpu"), 1, num_workers=1)))
    assert "ValueError: a real fault" in printed and "BrokenPipeError" not in printed
    assert nice == os.nice(0) + 10
