"""The ceiling of a generated dataset: the macro-F1 a learner reaches that tells mask and gender perfectly and reads
each person's age from the exact cues the generator drew (hair R, G, B and wrinkles), on the very people of the set.
A recipe is then judged as a share of it: eval / ceiling on the eval people, CV / ceiling on the train people.

    python -m bench.ceiling --data_dir D --seed S [--run LOG_DIR/NAME]

D must be what `python -m tools.make_synthetic_data --out D --seed S` wrote (its people are drawn again from the
seed, and checked against D's train.csv and eval answers). The learner is bench/age_ceiling's gradient boosting,
scored as a run is: 4 folds by person (the run's own folds.csv with --run, else the folds train.py would draw), the
CV cross-fitted, eval the mean of the fold models; argmax and src/decision.py's plug-in offsets. Every photo of a
person has the same cues, so per-photo and per-person decisions are one here. CPU seconds; no image is read.
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
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from src.data.tables import assign_folds
from src.decision import decide, tune
from src.labels import NUM_CLASSES, PHOTO_MASK, PHOTO_NAMES, age_band, decode_label, encode_label
from src.metrics import scores
from tools import make_synthetic_data as generator

FOLDS = 4


def drawn_people(seed: int, n: int, stream: int) -> pd.DataFrame:
    """The people the generator drew for `seed` (stream 1: train, 3: eval): gender, age and age cues."""
    rows = []
    for idx in range(n):
        prng = np.random.default_rng([seed, stream, idx])
        gender, age = generator.sample_person(prng)
        rows.append(dict(person=idx, gender=gender, age=age, prng=prng))
    return pd.DataFrame(rows)


def with_cues(people: pd.DataFrame, genders: np.ndarray) -> pd.DataFrame:
    """Each person's style drawn after sample_person, as the generator draws it; `genders` are the true ones (the
    generator forces them for the known label errors before drawing the style)."""
    cues = []
    for prng, gender, age in zip(people["prng"], genders, people["age"]):
        style = generator.person_style(prng, int(gender), int(age))
        cues.append([*style["hair"], style["wrinkles"]])
    return people.drop(columns="prng").assign(gender=genders, hair_r=[c[0] for c in cues],
                                              hair_g=[c[1] for c in cues], hair_b=[c[2] for c in cues],
                                              wrinkles=[c[3] for c in cues])


def train_people(data_dir: Path, seed: int) -> pd.DataFrame:
    """The train people of D with their true gender, age and cues, in train.csv's order (person_id = id)."""
    table = pd.read_csv(data_dir / "train" / "train.csv", dtype=str)
    drawn = drawn_people(seed, len(table), 1)
    ids = generator.make_ids(len(table), np.random.default_rng([seed, 0]))
    if ids != table["id"].tolist() or (drawn["age"].astype(str) != table["age"]).any():
        raise SystemExit(f"error: {data_dir} was not made by tools.make_synthetic_data with --seed {seed}")
    truly = np.where(np.isin(ids, generator.TRULY_MALE_LABELLED_FEMALE), 0,
                     np.where(np.isin(ids, generator.TRULY_FEMALE_LABELLED_MALE), 1, drawn["gender"]))
    return with_cues(drawn, truly).assign(person_id=ids)


def eval_people(data_dir: Path, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(eval people with cues, the eval answers with each ImageID's person)."""
    answers = pd.read_csv(data_dir / "eval_answers.csv")
    n = len(answers) // len(PHOTO_NAMES)
    image_person = {hashlib.sha1(f"{seed}-{idx}-{k}".encode()).hexdigest() + ".jpg": idx
                    for idx in range(n) for k in range(len(PHOTO_NAMES))}
    if set(image_person) != set(answers["ImageID"]):
        raise SystemExit(f"error: {data_dir}'s eval images were not made with --seed {seed}")
    drawn = drawn_people(seed, n, 3)
    return with_cues(drawn, drawn["gender"].to_numpy()), answers.assign(person=answers["ImageID"].map(image_person))


def photo_rows(people: pd.DataFrame, age_probs: np.ndarray, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of photo rows (columns person, mask): mask and gender certain, age from the person."""
    mask_of, gender_of, age_of = decode_label(np.arange(NUM_CLASSES))
    person, mask = rows["person"].to_numpy(), rows["mask"].to_numpy()
    gender = people["gender"].to_numpy()[person]
    same = (mask_of[None] == mask[:, None]) & (gender_of[None] == gender[:, None])
    probs = np.where(same, age_probs[person][:, age_of], 0.0)
    return probs, encode_label(mask, gender, age_band(people["age"].to_numpy()[person]))


def seven_each(n: int) -> pd.DataFrame:
    states = [PHOTO_MASK[name] for name in PHOTO_NAMES]
    return pd.DataFrame(dict(person=np.repeat(np.arange(n), len(states)), mask=np.tile(states, n)))


def ceiling(data_dir: Path, seed: int, run: Path | None = None) -> dict:
    """The learner's CV (train people) and eval (eval people) macro-F1 and per-task F1, argmax and tuned."""
    train = train_people(data_dir, seed)
    if run is not None:
        saved = pd.read_csv(run / "folds.csv", dtype={"person_id": str})
        folds = train["person_id"].map(dict(zip(saved["person_id"], saved["fold"]))).to_numpy()
    else:
        table = pd.DataFrame(dict(person_id=train["person_id"], gender=train["gender"], age=train["age"]))
        folds = assign_folds(table, FOLDS, seed=42)["fold"].to_numpy()
    cues = ["hair_r", "hair_g", "hair_b", "wrinkles"]
    x, y = train[cues].to_numpy(), age_band(train["age"].to_numpy())
    oof, models = np.zeros((len(train), 3)), []
    for k in np.unique(folds):
        model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=0)
        models.append(model.fit(x[folds != k], y[folds != k]))
        oof[folds == k] = model.predict_proba(x[folds == k])
    rows = seven_each(len(train))
    probs, labels = photo_rows(train, oof, rows)
    tuning = tune(probs, labels, folds[rows["person"]])
    evals, answers = eval_people(data_dir, seed)
    eval_rows = answers.assign(mask=answers["ans"] // 6)
    eval_probs, eval_labels = photo_rows(evals, np.mean([m.predict_proba(evals[cues].to_numpy()) for m in models], 0),
                                         eval_rows)
    if not (eval_labels == answers["ans"].to_numpy()).all():
        raise SystemExit(f"error: {data_dir}'s eval answers differ from the people drawn with --seed {seed}")
    return dict(cv_argmax=tuning.cv_argmax, cv_tuned=tuning.cv_tuned,
                eval_argmax=scores(eval_labels, decide(eval_probs, None)),
                eval_tuned=scores(eval_labels, decide(eval_probs, tuning.offsets)),
                train_people=len(train), eval_people=len(evals))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True, help="the --seed tools.make_synthetic_data made data_dir with")
    p.add_argument("--run", type=Path, help="a run folder whose folds.csv the CV takes")
    a = p.parse_args(argv)
    c = ceiling(a.data_dir, a.seed, a.run)
    print(f"setup: {datetime.date.today()}  data={a.data_dir} (seed {a.seed}, {c['train_people']} train and "
          f"{c['eval_people']} eval people)  learner: mask and gender perfect, age by gradient boosting on the "
          f"exact cues")
    print("| ceiling | CV macro-F1 | eval macro-F1 | eval age F1 |\n|---|---|---|---|")
    for rule in ("argmax", "tuned"):
        e = c[f"eval_{rule}"]
        print(f"| {rule} | {c[f'cv_{rule}']:.4f} | {e['f1']:.4f} | {e['f1_age']:.4f} |")


if __name__ == "__main__":
    main()
