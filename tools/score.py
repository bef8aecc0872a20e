"""Score a submission against the truth:  python -m tools.score SUBMISSION.csv ANSWERS.csv

Both files are ImageID,ans; rows are matched by ImageID. Prints macro-F1, per-task F1 and accuracy.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submission", help="the predictions: ImageID,ans")
    p.add_argument("answers", help="the truth: ImageID,ans (generated data writes eval_answers.csv)")
    a = p.parse_args(argv)

    import pandas as pd

    from src.metrics import scores

    sub, truth = pd.read_csv(a.submission), pd.read_csv(a.answers)
    merged = truth.merge(sub, on="ImageID", suffixes=("_true", "_pred"), how="left")
    if merged["ans_pred"].isna().any():
        raise SystemExit(f"error: {a.submission} lacks {merged['ans_pred'].isna().sum()} ImageIDs of {a.answers}")
    s = scores(merged["ans_true"], merged["ans_pred"].astype(int))
    print(f"macro_f1={s['f1']:.4f} f1_mask={s['f1_mask']:.4f} f1_gender={s['f1_gender']:.4f} "
          f"f1_age={s['f1_age']:.4f} acc={s['acc']:.4f}")


if __name__ == "__main__":
    main()
