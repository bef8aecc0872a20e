"""How far apart can a cross-fitted CV on 300 people and an eval on 200 lie by sampling alone? cpu15's target is an
eval macro-F1 of at least 0.72 with the tuned CV within 0.03 of it. This bench scores a learner at the
ceiling (or, blurred, about as good as cpu15) as cpu15 is scored, over many draws of the data, and counts how often
that learner passes.

    python -m bench.eval_noise [--draws 200] [--train_people 300] [--eval_people 200 1000] [--cue_noise 0] [--seed 0]

The learner: mask and gender told perfectly, and age by bench/age_ceiling's learner on each person's exact age cues
(hair R, G, B and wrinkles, as tools/make_synthetic_data.py draws them). Each person becomes seven rows (five masks
worn, one incorrect, one without), so the 18 classes and their sizes are the data's. The CV is 4-fold by person,
and eval is the mean of the four fold models, as cpu15's is; both are decided by src/decision.py's plug-in rule as
train.py and infer.py decide them (cross-fitted on the CV, fitted on every out-of-fold row for eval). --cue_noise S
blurs every cue by S of its spread (Gaussian). CPU seconds; no images are drawn.
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

import numpy as np

from bench.age_ceiling import people
from src.labels import NUM_CLASSES, PHOTO_MASK, PHOTO_NAMES, age_band, decode_label, encode_label

FOLDS = 4
TARGET_F1, TARGET_GAP = 0.72, 0.03  # cpu15's target: eval macro-F1 at least this, the tuned CV within this of it
PHOTO_STATES = np.array([PHOTO_MASK[name] for name in PHOTO_NAMES])  # a person's seven photos


def photos(n_people: int) -> tuple[np.ndarray, np.ndarray]:
    """(person, mask state) of each photo: every person's seven, in PHOTO_NAMES order."""
    return np.repeat(np.arange(n_people), len(PHOTO_STATES)), np.tile(PHOTO_STATES, n_people)


def class_probs(age_probs: np.ndarray, genders: np.ndarray) -> np.ndarray:
    """(photos, 18) probabilities: mask state and gender certain, the age band from the person's `age_probs` row."""
    person, states = photos(len(genders))
    mask_of, gender_of, age_of = decode_label(np.arange(NUM_CLASSES))
    same = (mask_of[None, :] == states[:, None]) & (gender_of[None, :] == genders[person][:, None])
    return np.where(same, age_probs[person][:, age_of], 0.0)


def photo_labels(genders: np.ndarray, bands: np.ndarray) -> np.ndarray:
    person, states = photos(len(genders))
    return encode_label(states, genders[person], bands[person])


def blurred(cues: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The cues with Gaussian noise of standard deviation `scale` (one per cue) added."""
    return cues + scale * rng.standard_normal(cues.shape)


def one_draw(rng: np.random.Generator, train_people: int, eval_sizes: list[int], cue_noise: float = 0.0
             ) -> tuple[float, list[float]]:
    """(tuned CV, [eval macro-F1 for each eval size]) of one draw of the data."""
    import pandas as pd  # here, not at the top: --help starts without them
    from sklearn.ensemble import HistGradientBoostingClassifier

    from src.data.tables import assign_folds
    from src.decision import decide, fast_macro_f1, tune

    x, ages, g = people(train_people, rng)
    y = age_band(ages)
    scale = cue_noise * x.std(0)  # the training people's spread of each cue
    x = blurred(x, scale, rng)
    table = pd.DataFrame(dict(person_id=np.arange(len(y)), gender=g, age=ages))
    folds = assign_folds(table, FOLDS, seed=0)["fold"].to_numpy()  # the repository's own person-level folds
    oof = np.zeros((len(y), 3))
    models = []
    for k in range(FOLDS):  # as cpu15: each fold's model predicts its held-out people, and all of them eval
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
        models.append(model.fit(x[folds != k], y[folds != k]))
        oof[folds == k] = model.predict_proba(x[folds == k])
    tuning = tune(class_probs(oof, g), photo_labels(g, y), folds[photos(len(y))[0]])
    evals = []
    for n in eval_sizes:
        ex, eages, eg = people(n, rng)
        ex, ey = blurred(ex, scale, rng), age_band(eages)
        eprobs = class_probs(np.mean([m.predict_proba(ex) for m in models], axis=0), eg)
        evals.append(fast_macro_f1(photo_labels(eg, ey), decide(eprobs, tuning.offsets)))
    return tuning.cv_tuned, evals


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=200, help="draws of the data (train and eval people)")
    p.add_argument("--train_people", type=int, default=300)
    p.add_argument("--eval_people", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--cue_noise", type=float, default=0.0, help="noise on each cue, in units of its spread")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.cue_noise < 0:
        p.error(f"--cue_noise must be at least 0, got {a.cue_noise}")
    rng = np.random.default_rng(a.seed)
    rows = [one_draw(rng, a.train_people, a.eval_people, a.cue_noise) for _ in range(a.draws)]
    cv = np.array([r[0] for r in rows])
    evals = np.array([r[1] for r in rows])
    print(f"setup: {datetime.date.today()}  seed={a.seed}  draws={a.draws}  train people={a.train_people}  "
          f"learner: mask and gender perfect, age by gradient boosting on the cues (noise {a.cue_noise} of their "
          f"spread); plug-in decisions")
    print(f"| eval people | eval macro-F1: mean (5-95%) | CV tuned - eval: mean (5-95%) | eval >= {TARGET_F1} | "
          f"abs(CV - eval) <= {TARGET_GAP} | both |")
    print("|---|---|---|---|---|---|")
    for j, n in enumerate(a.eval_people):
        e, gap = evals[:, j], cv - evals[:, j]
        high, close = e >= TARGET_F1, np.abs(gap) <= TARGET_GAP
        lo, hi = np.percentile(e, [5, 95])
        glo, ghi = np.percentile(gap, [5, 95])
        print(f"| {n:,} | {e.mean():.4f} ({lo:.3f}-{hi:.3f}) | {gap.mean():+.4f} ({glo:+.3f} to {ghi:+.3f}) | "
              f"{high.mean():.0%} | {close.mean():.0%} | {(high & close).mean():.0%} |")
    print(f"CV tuned ({a.train_people} people, cross-fitted): mean {cv.mean():.4f}, 5-95% "
          f"{np.percentile(cv, 5):.3f}-{np.percentile(cv, 95):.3f}")


if __name__ == "__main__":
    main()
