"""The sweep's cost model (src/sweep/cost.py) against a real run: the predicted training time, then the run trained
by train.py and timed.

    python -m bench.cost --config experiments/cpu15.yaml --data_dir D --log_dir L [--name cost] [train.py keys]

The arguments are train.py's (`--name cost` unless given). The prediction counts the run's training photos x epochs
x the model's measured step time a photo, and its validation passes; the measured time is the whole train.py run
(start-up, data check, image cache, every fold). A ratio under 1 means the model predicts short: the loader,
start-up and the epochs' writes are what it leaves out.
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


def main(argv=None) -> int:
    argv = ["--name", "cost", *map(str, sys.argv[1:] if argv is None else argv)]
    cfg = parse_or_exit(argv, TrainConfig, prog="python -m bench.cost")
    import torch  # after the arguments: --help and a bad one cost no torch import

    import train
    from src.sweep import cost

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    times = cost.measure_steps(cfg, device)
    measuring = time.perf_counter() - t0
    photos = cost.fold_photos(cfg)
    predicted = cost.predicted_seconds(cfg, photos, times)
    t0 = time.perf_counter()
    code = train.main(argv)
    measured = time.perf_counter() - t0
    if code:
        return code
    print(f"\nstep times measured in {measuring:.1f} s on {device.type} ({torch.get_num_threads()} threads): "
          f"train {times.train * 1000:.2f} ms, validation {times.val * 1000:.2f} ms a photo")
    print("| model | size | batch | epochs | folds (train/val photos) | predicted s | measured s | predicted / measured |")
    print("|---|---|---|---|---|---|---|---|")
    folds = ", ".join(f"{t}/{v}" for t, v in photos)
    print(f"| {cfg.model} | {cfg.img_height}x{cfg.img_width} | {cfg.batch_size} | {cfg.epochs} | {folds} | "
          f"{predicted:.3g} | {measured:.3g} | {predicted / measured:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
