"""Train the K folds of a run:  python train.py --data_dir D --name N [--fold k|all] [--key value ...]

`--check_data` validates the dataset (decoding every image) and prints a JSON summary instead.
Every option lives in src/config/schema.py; `python train.py --help` lists them.
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import TrainConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, TrainConfig)
    with fail_cleanly():
        if cfg.check_data:
            from src.data.check import print_check_data
            from src.engine.builders import crops
            from src.run.rundir import cache_dir

            return print_check_data(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed,
                                    cfg.max_image_pixels,
                                    lambda paths: crops(cfg, paths, cache_dir(cfg.log_dir), cfg.max_image_pixels))
        if cfg.teacher:
            from src.predict.distill import distill_train

            distill_train(cfg)
        else:
            from src.engine.trainer import train

            train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
