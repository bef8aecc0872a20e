"""Predict any photos with the finished folds of one or more runs: one row per photo.

    python predict.py --run N PATH... [--out preds.csv] [--format csv|json] [--strict] [--engine auto] [--cam DIR]
    python predict.py PATH... --runs N1 N2            # or end the list of runs with --: --runs N1 N2 -- PATH...
PATH: image files, folders (searched recursively) or globs ('photos/**/*.jpg'); rows go to stdout without --out.
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import PredictConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, PredictConfig)
    with fail_cleanly():
        from src.insight.cam import PhotoMaps
        from src.predict.photos import predict

        predict(cfg, PhotoMaps(cfg.cam) if cfg.cam else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
