"""One epoch of a recipe, timed: its images per second and the whole command's wall time.

    python -m bench.epoch --config experiments/baseline.yaml --data_dir D --log_dir L --name N --pretrained false

The arguments are train.py's; `--fold 0 --epochs 1` come first, so one fold trains one epoch unless they say
otherwise. The last line is the epoch's: the fold's training and validation images, the epoch's seconds
(metrics.csv's time_s: training, validation and its checkpoints), the images per second they make, and the wall
time of the whole train.py run (start-up, data check, image cache, the epoch).
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import sys
import time

from src.config.parsing import parse_or_exit
from src.config.schema import TrainConfig


def fold_images(cfg: TrainConfig, run, k: int) -> tuple[int, int]:
    """(training, validation) images of fold k of `run` (a RunDir), as the trainer splits them: the run's saved
    folds, the age filter's labels, drop_ages left out of training."""
    import pandas as pd

    from src.data.tables import load_train, with_saved_folds
    from src.engine.fold import dropped

    table = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    table = with_saved_folds(table, pd.read_csv(run.folds_csv, dtype={"person_id": str}), run.folds_csv)
    val = (table["fold"] == k).to_numpy()
    return int((~val & ~dropped(table, cfg.drop_ages)).sum()), int(val.sum())


def main(argv=None) -> int:
    argv = ["--fold", "0", "--epochs", "1", *map(str, sys.argv[1:] if argv is None else argv)]
    cfg = parse_or_exit(argv, TrainConfig, prog="python -m bench.epoch")
    if cfg.fold == "all":
        print("error: bench.epoch times one fold: give --fold k", file=sys.stderr)
        return 2
    import pandas as pd  # after the arguments: --help and a bad one cost no torch import

    import train
    from src.run.rundir import RunDir

    t0 = time.perf_counter()
    code = train.main(argv)
    wall = time.perf_counter() - t0
    if code:
        return code
    k = int(cfg.fold)
    run = RunDir(cfg.log_dir, cfg.name)
    n_train, n_val = fold_images(cfg, run, k)
    epoch = pd.read_csv(run.fold_metrics(k)).iloc[-1]
    print(f"epoch: {cfg.model} {cfg.img_height}x{cfg.img_width} batch {cfg.batch_size}, fold {k} epoch "
          f"{int(epoch['epoch'])}: {n_train} training + {n_val} validation images in {epoch['time_s']:.1f} s = "
          f"{(n_train + n_val) / epoch['time_s']:.1f} img/s; the whole command {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
