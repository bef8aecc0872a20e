"""One pseudo-labelling round: predict unlabelled images with run --run, keep those at or above
--pseudo_threshold, and train a new run --name on the labelled data plus them (training folds only).

    python pseudo_train.py --data_dir D --run SOURCE --name NEW [--unlabeled_dir DIR] [--pseudo_threshold 0.9]
    python pseudo_train.py --data_dir D --name NEW --pseudo_csv FILE     # reuse existing pseudo labels
"""
import sys

from src import config
from src.cli import fail_cleanly


def main(argv=None) -> int:
    cfg = config.parse_or_exit(argv)
    with fail_cleanly():
        from src.engine import train
        from src.predict import make_pseudo_labels

        if not cfg.pseudo_csv:
            cfg.pseudo_csv = str(make_pseudo_labels(cfg))
            cfg.overwrite = False  # the folder now holds the fresh pseudo labels
        train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
