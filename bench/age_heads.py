"""Age heads side by side on runs of one dataset, each decided as a finished run decides, so that runs of a single
fold compare too (train.py writes decision.json only once every fold has run): the plug-in offsets and, for a
number age head, the age cut points, fitted with src/decision.py on the run's out-of-fold rows, applied to its
eval_probs.csv and scored against the eval answers.

    python -m bench.age_heads --data_dir D --log_dir L --runs band ordinal distribution regression [--ceiling C]

Each run needs the oof.csv of its trained folds and `python infer.py --run R`'s eval_probs.csv. Columns: the folds,
CV macro-F1 (argmax, over the out-of-fold rows), the age error in years out of fold, eval macro-F1 by argmax and
decided, the decided eval's mask / gender / age F1, and eval / ceiling (C: `python -m bench.ceiling`'s tuned eval
on the same people). No training: seconds a run.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from src import decision
from src.labels import PROB_COLUMNS
from src.metrics import scores
from src.engine.evaluation import age_error
from src.predictions import Predictions
from src.run.oof import read_oof
from src.run.rundir import RunDir


def decided(run: RunDir, answers: pd.DataFrame) -> dict:
    """One run's out-of-fold figures and its eval, by argmax and by the offsets (and cut points) fitted on its
    out-of-fold rows."""
    oof = read_oof(run)
    (probs, years), labels = Predictions.from_table(oof), oof["label"].to_numpy()
    offsets = decision.plugin_offsets(probs, labels)
    cuts = None if years is None else decision.fit_cuts(probs, labels, years, offsets)
    ev = pd.read_csv(run.root / "eval_probs.csv").merge(answers, on="ImageID", validate="one_to_one")
    on_eval = Predictions.from_table(ev)
    tuned = scores(ev["ans"], decision.decide(on_eval.probs, offsets, on_eval.years if cuts is not None else None,
                                              cuts))
    return dict(folds=oof["fold"].nunique(), cv=scores(labels, probs.argmax(1))["f1"],
                mae=age_error(oof),
                argmax=scores(ev["ans"], ev[PROB_COLUMNS].to_numpy().argmax(1))["f1"], tuned=tuned, cuts=cuts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True, help="the data the runs trained and inferred on")
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--ceiling", type=float, help="bench.ceiling's tuned eval macro-F1 on the same people")
    a = p.parse_args(argv)
    answers = pd.read_csv(a.data_dir / "eval_answers.csv")
    print(f"setup: {datetime.date.today()}  data={a.data_dir} ({len(answers)} eval photos)  log_dir={a.log_dir}")
    print("| run | folds | CV argmax | age off (years) | eval argmax | eval decided | mask / gender / age | "
          "/ ceiling | cut points |\n|---|---|---|---|---|---|---|---|---|")
    for name in a.runs:
        r = decided(RunDir(a.log_dir, name), answers)
        t = r["tuned"]
        mae = "-" if r["mae"] is None else f"{r['mae']:.2f}"
        share = "-" if a.ceiling is None else f"{t['f1'] / a.ceiling:.3f}"
        cuts = "-" if r["cuts"] is None else "%g, %g" % r["cuts"]
        print(f"| {name} | {r['folds']} | {r['cv']:.4f} | {mae} | {r['argmax']:.4f} | {t['f1']:.4f} | "
              f"{t['f1_mask']:.3f} / {t['f1_gender']:.3f} / {t['f1_age']:.3f} | {share} | {cuts} |")

if __name__ == "__main__":
    main()
