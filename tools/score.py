"""Score a submission against the truth:  python -m tools.score SUBMISSION.csv ANSWERS.csv

Both files are ImageID,ans; rows are matched by ImageID. Prints macro-F1, per-task F1 and accuracy.
"""
import sys

import pandas as pd

from src.metrics import scores


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    sub, truth = (pd.read_csv(p) for p in argv)
    merged = truth.merge(sub, on="ImageID", suffixes=("_true", "_pred"), how="left")
    if merged["ans_pred"].isna().any():
        raise SystemExit(f"error: {argv[0]} lacks {merged['ans_pred'].isna().sum()} ImageIDs of {argv[1]}")
    s = scores(merged["ans_true"], merged["ans_pred"].astype(int))
    print(f"macro_f1={s['f1']:.4f} f1_mask={s['f1_mask']:.4f} f1_gender={s['f1_gender']:.4f} "
          f"f1_age={s['f1_age']:.4f} acc={s['acc']:.4f}")


if __name__ == "__main__":
    main()
