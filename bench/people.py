"""People, not photos, measured: one trained run on generated data, its eval predicted photo by photo and per
person, argmax and tuned, against the ceiling of the very same people (bench/ceiling.py).

    python -m bench.people --data_dir D --seed S --log_dir L --run NAME [--features] [--folds]

D is `tools.make_synthetic_data --seed S` data with its eval answers; the run is finished (every fold's oof.csv).
The bench runs `infer.py --group people` once (inference.yaml records what the grouping took, reading the
photos' appearance included), then decides its eval_probs.csv four ways: per photo or per person, argmax or tuned
(decision.json's offsets and person_offsets), and prints one table row each with eval macro-F1, per-task F1,
eval / ceiling, the CV of the same decision (cv.json) and CV / ceiling, and the clustering's purity and completeness
on eval (the people known from the generator's naming) and on the out-of-fold rows.
--features also compares what the photos are grouped by on eval: the appearance under the person metric (the
default), that plus the model's gender and age log-probabilities, and the model's own embedding (the neck output,
mean of the fold models) alone and with the appearance. --folds scores each fold's model alone on eval beside its
own out-of-fold F1: how much of what infer submits a single fold model's CV can see.
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
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.ceiling import ceiling, eval_people
from src import people
from src.decision import decide
from src.files import read_json, read_yaml
from src.labels import PROB_COLUMNS
from src.metrics import scores
from src.run.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent


def timed_infer(data_dir: Path, log_dir: Path, run: str, out: Path) -> tuple[float, float]:
    """(infer's wall time, the grouping's share of it) for `infer.py --group people`."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "infer.py", "--data_dir", str(data_dir), "--log_dir", str(log_dir), "--run", run,
                    "--group", "people", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0, read_yaml(out.with_suffix(".yaml"))["grouping"]["seconds"]


def decisions(probs: np.ndarray, groups: np.ndarray, saved: dict) -> dict[str, np.ndarray]:
    offsets = np.asarray(saved["offsets"])
    person = np.asarray(saved.get("person_offsets", offsets))
    return {"per photo, argmax": decide(probs, None), "per photo, tuned": decide(probs, offsets),
            "per person, argmax": people.decide_people(probs, groups, None),
            "per person, tuned": people.decide_people(probs, groups, person, offsets)}


def share(value: float, of: float) -> str:
    return f"{value / of:.3f}" if of > 0 else "n/a"


CV_KEYS = {"per photo, argmax": "cv_f1", "per photo, tuned": "cv_f1_tuned", "per person, argmax": "cv_f1_grouped",
           "per person, tuned": "cv_f1_grouped_tuned"}


def feature_table(data_dir: Path, log_dir: Path, run: str, probs: np.ndarray, paths: list, person: np.ndarray):
    """Purity and completeness on eval for each choice of what the photos are grouped by."""
    import torch

    from src.data.appearance import appearance
    from src.data.dataset import FaceDataset
    from src.engine import builders
    from src.predict.engines import load_models
    from src.predict.grouping import saved_people
    from src.predict.plans import plan_run

    plan = plan_run(log_dir, run, "auto")
    saved = saved_people(plan)
    metric = people.PersonMetric(saved["matrix"], saved["offset"])
    looks = metric(appearance(paths, 10**8, 2))
    models = load_models(plan.cfg, plan.checkpoints, torch.device("cpu"))
    ds = FaceDataset(builders.file_images(plan.cfg, paths, log_dir, 10**8), None, builders.eval_transform(plan.cfg))
    loader = builders.loader(ds, plan.cfg, torch.device("cpu"), 64)
    chunks = []
    with torch.no_grad():
        for x, _, _ in loader:
            chunks.append(torch.stack([m.embed(x) for m in models]).mean(0).numpy())
    embedding = np.concatenate(chunks)
    choices = {"appearance (person metric)": people.photo_features(looks, probs),
               "appearance + gender and age log-probabilities": people.photo_features(looks, probs, 1.0),
               "model embedding": people.photo_features(embedding, probs),
               "model embedding + appearance": np.concatenate([people.photo_features(embedding, probs),
                                                               people.photo_features(looks, probs)], 1)}
    print("\n| grouped by | grouped | purity | completeness |\n|---|---|---|---|")
    for name, x in choices.items():
        c = people.purity_completeness(people.group_photos(x, probs).groups, person)
        print(f"| {name} | {c['grouped']:.3f} | {c['purity']:.3f} | {c['completeness']:.3f} |")


def fold_table(data_dir: Path, log_dir: Path, run: str, paths: list, truth: np.ndarray, groups: np.ndarray,
               saved: dict, cv: dict):
    """Why a CV can under-read what infer submits: each fold's model alone on eval (flip TTA, as infer), against
    that fold's own out-of-fold F1, and the mean of the fold models."""
    import torch

    from src.data.dataset import FaceDataset
    from src.engine import builders
    from src.predict.engines import TorchEngine, load_models, predict_batches
    from src.predict.plans import plan_run

    plan = plan_run(log_dir, run, "auto")
    cpu = torch.device("cpu")
    ds = FaceDataset(builders.file_images(plan.cfg, paths, log_dir, 10**8), None, builders.eval_transform(plan.cfg))
    offsets = np.asarray(saved["offsets"])
    person = np.asarray(saved.get("person_offsets", offsets))
    print("\n| model | fold's own CV (per photo, argmax) | eval per photo, argmax | eval per photo, tuned | "
          "eval per person, argmax | eval per person, tuned |\n|---|---|---|---|---|---|")
    every = []
    for k, model in zip(plan.folds, load_models(plan.cfg, plan.checkpoints, cpu)):
        engine = TorchEngine(run, [model], [k], plan.checkpoint, cpu, "flip", "none")
        _, index, probs, _ = predict_batches(engine, builders.loader(ds, plan.cfg, cpu, 64))
        probs = probs[np.argsort(index)]
        every.append(probs)
        print(f"| fold {k} alone | {cv['fold_f1'][str(k)]:.4f} | " + " | ".join(
            f"{scores(truth, c)['f1']:.4f}" for c in (decide(probs, None), decide(probs, offsets),
                                                     people.decide_people(probs, groups, None),
                                                     people.decide_people(probs, groups, person, offsets))) + " |")
    mean = np.mean(every, axis=0)
    print(f"| mean of the {len(every)} | {cv['cv_f1']:.4f} (all rows) | " + " | ".join(
        f"{scores(truth, c)['f1']:.4f}" for c in (decide(mean, None), decide(mean, offsets),
                                                 people.decide_people(mean, groups, None),
                                                 people.decide_people(mean, groups, person, offsets))) + " |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True, help="the --seed tools.make_synthetic_data made data_dir with")
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--features", action="store_true", help="also compare what the photos are grouped by")
    p.add_argument("--folds", action="store_true", help="also score each fold's model alone on eval")
    a = p.parse_args(argv)
    run = RunDir(a.log_dir, a.run)
    out = a.log_dir / f"bench_people_{a.run}"
    out.mkdir(exist_ok=True)
    t_infer, t_grouping = timed_infer(a.data_dir, a.log_dir, a.run, out / "people.csv")
    c = ceiling(a.data_dir, a.seed, run.root)
    _, answers = eval_people(a.data_dir, a.seed)
    probs_df = pd.read_csv(out / "people.probs.csv").set_index("ImageID").loc[answers["ImageID"]]
    probs, groups = probs_df[PROB_COLUMNS].to_numpy(), probs_df["group"].to_numpy()
    truth, person = answers["ans"].to_numpy(), answers["person"].to_numpy()
    cv, saved = read_json(run.cv), read_json(run.decision)
    made = decisions(probs, groups, saved)
    submitted = pd.read_csv(out / "people.csv").set_index("ImageID").loc[answers["ImageID"], "ans"].to_numpy()
    assert (made["per person, tuned"] == submitted).all(), "infer's submission is not the per-person tuned decision"
    clustering = people.purity_completeness(groups, person)
    print(f"setup: {datetime.date.today()}  data={a.data_dir} (seed {a.seed}, {c['train_people']} train and "
          f"{c['eval_people']} eval people)  run={run.root}")
    print(f"infer --group people: {t_infer:.1f} s wall, of which the grouping {t_grouping:.1f} s "
          f"({len(answers)} photos)")
    print(f"eval clustering: grouped {clustering['grouped']:.3f}, purity {clustering['purity']:.3f}, completeness "
          f"{clustering['completeness']:.3f}; out-of-fold clustering: {cv.get('grouping')}")
    print(f"ceiling: CV {c['cv_tuned']:.4f} tuned ({c['cv_argmax']:.4f} argmax), eval {c['eval_tuned']['f1']:.4f} "
          f"tuned ({c['eval_argmax']['f1']:.4f} argmax)")
    print("| decision | eval macro-F1 | mask | gender | age | eval / ceiling | CV | CV / ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for name, classes in made.items():
        s, rule = scores(truth, classes), name.split(", ")[1]
        ceiling_eval, ceiling_cv = c[f"eval_{rule}"]["f1"], c[f"cv_{rule}"]
        cv_f1 = cv.get(CV_KEYS[name], float("nan"))
        print(f"| {name} | {s['f1']:.4f} | {s['f1_mask']:.3f} | {s['f1_gender']:.3f} | {s['f1_age']:.3f} | "
              f"{share(s['f1'], ceiling_eval)} | {cv_f1:.4f} | {share(cv_f1, ceiling_cv)} |")
    paths = [str(a.data_dir / "eval" / "images" / i) for i in answers["ImageID"]]
    if a.features:
        feature_table(a.data_dir, a.log_dir, a.run, probs, paths, person)
    if a.folds:
        fold_table(a.data_dir, a.log_dir, a.run, paths, truth, groups, saved, cv)


if __name__ == "__main__":
    main()
