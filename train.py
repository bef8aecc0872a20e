"""Train the K folds of a run:  python train.py --data_dir D --name N [--fold k|all] [--key value ...]

`--check_data` validates the dataset (decoding every image) and prints a JSON summary instead.
Every option lives in src/config.py; `python train.py --help` lists them.
"""
import sys

from src import config
from src.cli import fail_cleanly


def main(argv=None) -> int:
    cfg = config.parse_or_exit(argv, config.TrainConfig)
    with fail_cleanly():
        if cfg.check_data:
            from src.data import print_check_data

            return print_check_data(cfg)
        from src.trainer import train

        train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
