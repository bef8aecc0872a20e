"""Predict eval/info.csv with the finished folds of one or more runs and write the submission.

    python infer.py --data_dir D --run N [--checkpoint best_f1] [--tta flip] [--out PATH]
    python infer.py --data_dir D --runs N1 N2          # ensemble runs (any backbones and sizes)
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import InferConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, InferConfig)
    with fail_cleanly():
        from src.predict.infer import infer

        infer(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
