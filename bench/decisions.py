"""Compare decision rules on trained runs with known eval answers: argmax, offsets searched for the best
out-of-fold macro-F1 (a free one per class, or sums of 8 task terms), and the plug-in rule train.py fits (each
task value's offset -log of its out-of-fold F1, src/decision.py).

    python -m bench.decisions --data_dir /tmp/d --log_dir /tmp/l --run cpu15 [--run other ...]

Each run needs every fold's oof.csv and the eval probabilities of `python infer.py --run RUN` (eval_probs.csv).
Per run and rule: the CV macro-F1 over all out-of-fold rows (the offsets cross-fitted: each fold decided by
offsets fitted on the other folds), eval macro-F1 and per-task F1 with offsets fitted on every out-of-fold row,
and CV - eval. Then, per run, one term alone: the 60+ age term over a few values, its macro-F1 on every
out-of-fold row and on eval (nothing fitted), which shows whether the two agree on where the rare band's best
offset lies. No training: seconds per run. The search (`fit_offsets`) lives here: only this comparison uses it.
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
from src.labels import NUM_CLASSES, PROB_COLUMNS
from src.metrics import scores
from src.run.oof import read_oof
from src.run.rundir import RunDir, prediction_files

GRID = np.round(np.linspace(-2.0, 2.0, 41), 2)  # candidate values of one task term, in log-probability units
ROUNDS = 3  # passes over the task terms; a pass that improves nothing ends the search
AGE_60_TERMS = (0.0, 0.5, 1.0, 1.5)  # the 60+ term's values in the second table; 0 is the argmax


def fit_offsets(probs: np.ndarray, labels: np.ndarray,
                terms_of_class: np.ndarray = decision.TERMS_OF_CLASS) -> np.ndarray:
    """The class offsets (terms_of_class @ terms) that maximise the whole-set macro-F1 of `labels`, by coordinate
    ascent over each term's GRID, from zero; np.eye(18) gives a free offset per class. RULES compares these
    searches with the plug-in rule train.py fits (src/decision.py)."""
    logp, labels = decision.log_probs(probs), np.asarray(labels, dtype=np.int64)
    terms = np.zeros(terms_of_class.shape[1])
    best = decision.fast_macro_f1(labels, logp.argmax(1))
    for _ in range(ROUNDS):
        improved = False
        for t in range(len(terms)):
            for value in GRID:
                trial = terms.copy()
                trial[t] = value
                score = decision.fast_macro_f1(labels, (logp + terms_of_class @ trial).argmax(1))
                if score > best + 1e-12:
                    best, terms, improved = score, trial, True
        if not improved:
            break
    return terms_of_class @ terms


RULES = {"argmax": None,
         "search, per class (18 free offsets)": lambda p, y: fit_offsets(p, y, np.eye(NUM_CLASSES)),
         "search, per task (8 terms)": lambda p, y: fit_offsets(p, y, decision.TERMS_OF_CLASS),
         "plug-in, -log F1 per task value (train.py's)": decision.plugin_offsets}


def out_of_fold(run: RunDir) -> pd.DataFrame:
    n_folds = pd.read_csv(run.folds_csv)["fold"].nunique()
    oof = read_oof(run, range(n_folds))
    missing = sorted(set(range(n_folds)) - set(oof["fold"]))
    if missing:
        raise SystemExit(f"run {run.name}: folds {missing} have no oof.csv; train every fold first")
    return oof


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True, help="generated data (eval_answers.csv beside eval/)")
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--run", action="append", required=True, help="a trained and inferred run (repeatable)")
    a = p.parse_args(argv)
    answers = pd.read_csv(a.data_dir / "eval_answers.csv")
    print(f"setup: {datetime.date.today()}  data={a.data_dir}  log_dir={a.log_dir}", flush=True)
    print("| run | rule | CV (cross-fitted) | eval | eval mask / gender / age | CV - eval |\n|---|---|---|---|---|---|")
    curves = []
    for name in a.run:
        run = RunDir(a.log_dir, name)
        oof = out_of_fold(run)
        probs = pd.read_csv(prediction_files(run.submission)["probs"])
        if not probs["ImageID"].equals(answers["ImageID"]):
            raise SystemExit(f"run {name}: its eval probabilities are not those of {a.data_dir}'s eval images")
        oof_p, oof_y, folds = oof[PROB_COLUMNS].to_numpy(), oof["label"].to_numpy(), oof["fold"].to_numpy()
        eval_p = probs[PROB_COLUMNS].to_numpy()
        for rule, fit in RULES.items():
            if fit is None:
                cv, offsets = decision.fast_macro_f1(oof_y, oof_p.argmax(1)), None
            else:
                tuning = decision.tune(oof_p, oof_y, folds, fit)
                cv, offsets = tuning.cv_tuned, tuning.offsets
            s = scores(answers["ans"], decision.decide(eval_p, offsets))
            print(f"| {name} | {rule} | {cv:.4f} | {s['f1']:.4f} | "
                  f"{s['f1_mask']:.3f} / {s['f1_gender']:.3f} / {s['f1_age']:.3f} | {cv - s['f1']:+.3f} |",
                  flush=True)
        curves.append((name, [age_60_term(oof_p, oof_y, eval_p, answers["ans"].to_numpy(), t) for t in AGE_60_TERMS]))
    print("\n| run | 60+ term | " + " | ".join(f"{t:+.1f}" for t in AGE_60_TERMS) + " |\n|---|---|"
          + "---|" * len(AGE_60_TERMS))
    for name, points in curves:
        for i, where in enumerate(("out of fold", "eval")):
            print(f"| {name} | {where} | " + " | ".join(f"{p[i]:.4f}" for p in points) + " |")


def age_60_term(oof_p, oof_y, eval_p, eval_y, term: float) -> tuple[float, float]:
    """Macro-F1 of every out-of-fold row and of eval with `term` added to the 60+ classes' log-probabilities."""
    offsets = decision.TERMS_OF_CLASS[:, -1] * term  # the last term is the 60+ band's
    return (decision.fast_macro_f1(oof_y, decision.decide(oof_p, offsets)),
            decision.fast_macro_f1(eval_y, decision.decide(eval_p, offsets)))


if __name__ == "__main__":
    main()
