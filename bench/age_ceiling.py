"""How well can age be told on the generator's data at all? The age macro-F1 of a learner that reads each person's
age cues exactly (the hair colour and the wrinkle level tools/make_synthetic_data.py draws), instead of a CNN
reading pixels: with plenty of training people, and with as few as cpu15 gets (a fold trains on 225 people).

    python -m bench.age_ceiling [--people 225] [--repeats 5] [--seed 0]

People are drawn by the generator's own `sample_person` and `person_style`. The learner is scikit-learn's
HistGradientBoostingClassifier on (hair R, G, B, wrinkles); its age-band probabilities are decided by argmax and by
the plug-in rule train.py fits (src/decision.py's value_offsets, here on the age task alone: the offset of a band is
-log of its F1 on the learner's own out-of-fold argmax). Scored on 20,000 fresh people; the small-data row is the mean (and range)
of `--repeats` training draws. CPU seconds; no images are drawn.
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

from src.labels import AGE_NAMES, age_band

TEST_PEOPLE = 20_000
# scikit-learn, src.decision and the generator are imported where they are used: --help starts without them


def people(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cues: hair R, G, B and wrinkles; age; gender) of n generated people."""
    from tools.make_synthetic_data import person_style, sample_person

    cues, ages, genders = [], [], []
    for _ in range(n):
        gender, age = sample_person(rng)
        style = person_style(rng, gender, age)
        cues.append([*style["hair"], style["wrinkles"]])
        ages.append(age)
        genders.append(gender)
    return np.array(cues, dtype=float), np.array(ages), np.array(genders)


def ceiling(train_people: int, rng: np.random.Generator, test) -> tuple[float, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import f1_score
    from sklearn.model_selection import cross_val_predict

    from src.decision import decide, value_offsets

    x, ages, _ = people(train_people, rng)
    y = age_band(ages)
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
    oof_probs = cross_val_predict(model, x, y, cv=4, method="predict_proba")
    offsets = value_offsets(y, oof_probs.argmax(1), len(AGE_NAMES))
    probs = model.fit(x, y).predict_proba(test[0])
    return tuple(f1_score(test[1], decide(probs, o), average="macro") for o in (None, offsets))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--people", type=int, default=225, help="training people of the small-data row (a cpu15 fold)")
    p.add_argument("--repeats", type=int, default=5, help="training draws of the small-data row")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    cues, ages, _ = people(TEST_PEOPLE, rng)
    test = cues, age_band(ages)
    print(f"setup: {datetime.date.today()}  seed={a.seed}  test people={TEST_PEOPLE}  learner: gradient boosting on "
          f"the exact cues (hair R, G, B, wrinkles)")
    print("| training people | age macro-F1, argmax | age macro-F1, plug-in offsets |")
    print("|---|---|---|")
    small = np.array([ceiling(a.people, rng, test) for _ in range(a.repeats)])
    (argmax_lo, tuned_lo), (argmax_hi, tuned_hi) = small.min(0), small.max(0)
    argmax, tuned = small.mean(0)
    print(f"| {a.people:,} (mean of {a.repeats}) | {argmax:.4f} ({argmax_lo:.3f}-{argmax_hi:.3f}) | {tuned:.4f} "
          f"({tuned_lo:.3f}-{tuned_hi:.3f}) |")
    argmax, tuned = ceiling(TEST_PEOPLE, rng, test)
    print(f"| {TEST_PEOPLE:,} | {argmax:.4f} | {tuned:.4f} |")


if __name__ == "__main__":
    main()
