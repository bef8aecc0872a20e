"""Score a submission against the truth:  python tools/score.py SUBMISSION.csv ANSWERS.csv

Both files are ImageID,ans; rows are matched by ImageID. Prints macro-F1, per-task F1 and accuracy.
"""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from src.metrics import macro_f1  # noqa: E402
from src.labels import decode_label  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    sub, truth = (pd.read_csv(p) for p in argv)
    merged = truth.merge(sub, on="ImageID", suffixes=("_true", "_pred"), how="left")
    if merged["ans_pred"].isna().any():
        raise SystemExit(f"error: {argv[0]} lacks {merged['ans_pred'].isna().sum()} ImageIDs of {argv[1]}")
    y, p = merged["ans_true"].to_numpy(), merged["ans_pred"].astype(int).to_numpy()
    t, q = decode_label(y), decode_label(p)
    print(f"macro_f1={macro_f1(y, p):.4f} f1_mask={macro_f1(t[0], q[0], 3):.4f} "
          f"f1_gender={macro_f1(t[1], q[1], 2):.4f} f1_age={macro_f1(t[2], q[2], 3):.4f} acc={(y == p).mean():.4f}")


if __name__ == "__main__":
    main()
