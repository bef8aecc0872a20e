"""Early stopping with Lightning's semantics (monitor, mode, patience, min_delta); state survives resume."""
from __future__ import annotations


class EarlyStopping:
    """Stop after `patience` epochs without an improvement larger than min_delta."""

    def __init__(self, monitor: str, mode: str = "auto", patience: int = 5, min_delta: float = 0.0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = ("min" if monitor == "val_loss" else "max") if mode == "auto" else mode
        self.best: float | None = None
        self.wait = 0

    def step(self, value: float) -> bool:
        """Record one epoch's value; True when it improved."""
        if self.best is None:
            improved = True
        elif self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        if improved:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.wait > 0 and self.wait >= self.patience

    def state_dict(self) -> dict:
        return dict(best=self.best, wait=self.wait)

    def load_state_dict(self, state: dict):
        self.best, self.wait = state["best"], state["wait"]
