"""A fold's writes of one epoch, carried out on a thread while the next epoch trains.

Checkpoints of a large network with its optimizer state, the confusion-matrix figures and the records take about a
second an epoch (bench/feed.py); on a GPU that trains an epoch in seconds, they would idle it for that long. The
training loop hands over a copy of what to write (`snapshot`) and goes on. At most one epoch's writes are in flight:
the next `submit` waits for them, so memory holds one copy. The writes keep their order and each is atomic, so a kill
at any moment leaves what a kill before the slowest write would have left, and the fold resumes from its last.pt.
An error of the writes (a full disk, a read-only folder) is raised in the training loop at its next `check`, `submit`
or `wait`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import torch


def snapshot(value):
    """A copy of a state (tensors in dicts, lists and tuples) on the CPU that training can no longer change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return value


class BackgroundWrites:
    """One job at a time on its own thread; its exception (any, a KeyboardInterrupt included) comes back to the
    caller."""

    def __init__(self, name: str):
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self, job: Callable[[], None]):
        try:
            job()
        except BaseException as e:  # handed back to the training loop, which decides
            self._error = e

    def check(self):
        """Raise the error of finished writes, without waiting for writes still running."""
        if self._thread is not None and not self._thread.is_alive():
            self.wait()

    def wait(self):
        """Wait for the writes in flight; raise their error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def submit(self, job: Callable[[], None]):
        """Run `job` on a new thread once the previous one has finished (its error is raised here instead)."""
        self.wait()
        # not a daemon: an interpreter that exits waits for the writes in flight (a signal's deadline aside)
        self._thread = threading.Thread(target=self._run, args=(job,), name=self.name)
        self._thread.start()
