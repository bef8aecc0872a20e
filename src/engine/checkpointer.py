"""What a fold saves after each epoch and restores on resume, in one place: last.pt's FoldState from the live
training objects and back, and the best_* files of the metrics that improved."""
from __future__ import annotations

import math
from pathlib import Path

from src.config.schema import BEST_BY_METRIC
from src.run.checkpoint import FoldState, load_into, save_best, set_rng_state

LOWER_IS_BETTER = ("val_loss",)


class FoldCheckpointer:
    """The training objects of one fold and the files they go to: `restore()` reads last.pt into them;
    after an epoch `save_best()` writes the best_* files that improved and, last of all, `save_last()` last.pt."""

    def __init__(self, last: Path, best_path, model, optimizer, scheduler, step, stopper, ema=None,
                 kept_model=None):
        self.last, self.best_path = last, best_path  # best_path(kind) -> the file of a best_* kind
        self.model, self.optimizer, self.scheduler, self.step, self.stopper = model, optimizer, scheduler, step, stopper
        self.ema = ema
        self.kept_model = kept_model if kept_model is not None else model  # the weights best_* files keep
        self.best = {metric: (math.inf if metric in LOWER_IS_BETTER else -math.inf) for metric in BEST_BY_METRIC}

    def improved(self, metrics: dict) -> dict[str, bool]:
        return {key: (metrics[key] < best) if key in LOWER_IS_BETTER else (metrics[key] > best)
                for key, best in self.best.items()}

    def restore(self, state: FoldState, rank: int, world: int, steps_per_epoch: int, network: str) -> int:
        """Load last.pt's state into the fold's objects; returns the first epoch still to run. `network` names the
        settings' model for the error when the weights are another's."""
        load_into(self.model, state.model, self.last, network)
        self.optimizer.load_state_dict(state.optimizer)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state.scheduler)
        self.stopper.load_state_dict(state.early_stopping)
        self.best = dict(state.best)
        rng = state.rng
        set_rng_state(rng[rank] if isinstance(rng, list) and len(rng) == world else rng[0] if isinstance(rng, list)
                      else rng)
        start_epoch = state.epoch + 1
        self.step.load_state_dict(dict(scaler=state.scaler, steps=start_epoch * steps_per_epoch))
        if self.ema is not None:
            self.ema.load_state_dict(state.ema)
        return start_epoch

    def save_best(self, epoch: int, metrics: dict, improved: dict[str, bool]):
        """best_<metric>.pt for each metric that improved this epoch."""
        for key in (key for key, better in improved.items() if better):
            self.best[key] = metrics[key]
            save_best(self.best_path(BEST_BY_METRIC[key]), self.kept_model.state_dict(), epoch, metrics, key)

    def save_last(self, epoch: int, rngs: list, finished: bool):
        """last.pt, written after everything else of the epoch (rngs: every rank's RNG state): a fold killed
        before it resumes from the previous epoch, whose records are all there."""
        FoldState(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                  scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
                  scaler=self.step.state_dict()["scaler"], early_stopping=self.stopper.state_dict(), best=self.best,
                  epoch=epoch, rng=rngs if len(rngs) > 1 else rngs[0], finished=finished,
                  ema=self.ema.state_dict() if self.ema is not None else None).save(self.last)

    def mark_finished(self, state: FoldState):
        """A fold resumed with no epochs left to run: last.pt as it was, with the best values as they are now,
        marked finished."""
        state.best, state.finished = dict(self.best), True
        state.save(self.last)
