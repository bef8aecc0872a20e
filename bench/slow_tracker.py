"""What a tracker that takes seconds to answer costs the training loop: the tiny model trains one fold of generated
data three ways, each in a fresh run folder: no tracker, then a stand-in tracker (the Tracker protocol of
src/run/trackers.py) whose every batch of epochs takes --sleep seconds to answer, as a tracking server far away or
overloaded would. Prints, per way, the loop's wait to hand over an epoch's writes (FoldSaver.save_epoch, the one place
the loop meets its writer thread), the wait at the run's end (the last syncs), and whether each epoch arrived once.

    python -m bench.slow_tracker [--sleep 10] [--epochs 4]
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import collections
import contextlib
import tempfile
import time
import uuid
from pathlib import Path


class SlowTracker:
    """A tracker whose every batch of epochs takes `sleep_s` to answer; it keeps what it was sent (`sent`: fold ->
    the epochs, in the order they came) and when each answer came (`answers`)."""

    lock = contextlib.nullcontext
    sleep_s = 10.0
    sent: dict = collections.defaultdict(list)
    answers: list = []

    def __init__(self, rec, run):
        pass

    @staticmethod
    def remote(rec):
        return True  # a server

    def begin(self, rec, tags, params, new_params):
        return None, rec.run_id or uuid.uuid4().hex[:12]

    def fold(self, rec, k, tags, restarted):
        return None if str(k) in rec.folds else uuid.uuid4().hex[:12]

    def metrics(self, rec, k, rows):
        time.sleep(self.sleep_s)
        if k is not None:
            type(self).sent[k] += [int(row["epoch"]) for row in rows]
        type(self).answers.append(time.monotonic())
        return len(rows)

    def file(self, rec, k, path, artifact_dir, image):
        pass

    def tags(self, rec, tags, params=None):
        pass

    def status(self, rec, k, status, end_ms):
        pass

    def close(self, finished):
        pass


@contextlib.contextmanager
def slow_tracker(sleep_s: float):
    """The stand-in tracker in place of W&B (nothing to install or reach), for the block."""
    from src.run import tracking, trackers

    SlowTracker.sleep_s, SlowTracker.sent, SlowTracker.answers = sleep_s, collections.defaultdict(list), []
    saved = trackers.BACKENDS["wandb"], tracking.check_target
    trackers.BACKENDS["wandb"], tracking.check_target = SlowTracker, lambda tracker, where: None
    try:
        yield SlowTracker
    finally:
        trackers.BACKENDS["wandb"], tracking.check_target = saved


@contextlib.contextmanager
def handovers():
    """(start, end) on time.monotonic of each FoldSaver.save_epoch call (the loop's wait for its writer), for the
    block."""
    from src.run.saver import FoldSaver

    real, waits = FoldSaver.save_epoch, []

    def timed(self, *args, **kwargs):
        t0 = time.monotonic()
        real(self, *args, **kwargs)
        waits.append((t0, time.monotonic()))

    FoldSaver.save_epoch = timed
    try:
        yield waits
    finally:
        FoldSaver.save_epoch = real


TINY = ["--model", "test_efficientnet", "--pretrained", "false", "--img_height", "64", "--img_width", "48",
        "--batch_size", "4", "--num_workers", "0", "--n_folds", "2", "--fold", "0", "--aug", "light", "--neck_dim", "32",
        "--msd_count", "2", "--optimizer", "adamw", "--scheduler", "none"]  # a fold in seconds on 2 CPU cores


def one_run(data: Path, log_dir: Path, name: str, epochs: int, tracker: str) -> dict:
    from src.config.parsing import parse
    from src.engine import trainer

    with handovers() as spans:
        t0 = time.perf_counter()
        trainer.train(parse([*TINY, "--data_dir", str(data), "--log_dir", str(log_dir), "--name", name, "--epochs",
                             str(epochs), "--tracker", tracker]))
        total = time.perf_counter() - t0
    return dict(waits=[end - start for start, end in spans], total=total)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sleep", type=float, default=10.0, help="seconds each batch of epochs takes to answer")
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args(argv)

    from src.run.logging import setup_logging
    from tools.make_synthetic_data import main as make_data

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d"
        make_data(["--out", str(data), "--train_people", "8", "--eval_people", "2", "--seed", "3", "--size", "48x64"])
        setup_logging()
        plain = one_run(data, Path(tmp) / "logs", "plain", a.epochs, "none")
        with slow_tracker(a.sleep) as tracker:
            slow = one_run(data, Path(tmp) / "logs", "slow", a.epochs, "wandb")
            sent, answers = dict(tracker.sent), list(tracker.answers)
    once = sorted(sent.get(0, [])) == list(range(a.epochs)) and len(sent.get(0, [])) == a.epochs
    print(f"\nthe tiny model, one fold of 8 generated people, {a.epochs} epochs; a tracker that takes {a.sleep:g} s a "
          f"batch of epochs")
    print("| tracker | loop's wait an epoch (mean, max) | run (s) | answers | each epoch once |")
    print("|---|---|---|---|---|")
    for label, r, extra in (("none", plain, "-"), (f"{a.sleep:g} s an answer", slow, f"{len(answers)}")):
        w = r["waits"]
        print(f"| {label} | {sum(w) / len(w):.3f} s, {max(w):.3f} s | {r['total']:.1f} | {extra} | "
              f"{'yes' if label == 'none' or once else 'no: ' + str(sent)} |")
    w_plain, w_slow = (sum(r["waits"]) / len(r["waits"]) for r in (plain, slow))
    print(f"the slow tracker cost the loop {w_slow - w_plain:+.3f} s an epoch; the run's end waited for its last "
          f"answers")


if __name__ == "__main__":
    main()
