"""One pseudo-labelling round: predict unlabelled images with --run (or --runs), keep those at or above
--pseudo_threshold, and train a new run --name on the labelled data plus them (training folds only).

    python pseudo_train.py --data_dir D --run SOURCE --name NEW [--unlabeled_dir DIR] [--pseudo_threshold 0.9]
    python pseudo_train.py --data_dir D --name NEW --pseudo_csv FILE     # reuse existing pseudo labels
"""
import sys

from src.config.parsing import parse_or_exit
from src.config.schema import PseudoConfig
from src.errors import fail_cleanly


def main(argv=None) -> int:
    cfg = parse_or_exit(argv, PseudoConfig)
    with fail_cleanly():
        from src.predict.pseudo import pseudo_train

        pseudo_train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
