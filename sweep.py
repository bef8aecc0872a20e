"""Search train.py settings with Optuna; every trial is an ordinary run in log_dir.

    python sweep.py --sweep experiments/sweeps/cpu.yaml --study S [--storage URL] [--n_trials N] \
        [--data_dir D] [--log_dir L] [--any_train_key value ...]     # fixed for every trial
    python sweep.py --study S [--storage URL] [--log_dir L] --show

Start the same command on each GPU (CUDA_VISIBLE_DEVICES=k) or machine to add workers to the study.
"""
import sys

from src.errors import fail_cleanly


def main(argv=None) -> int:
    with fail_cleanly():
        from src.sweep.worker import main as sweep

        return sweep(sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
