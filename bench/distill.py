"""One model as good as the ensemble? A teacher recipe's K folds against students distilled from it, on fresh seeds.

    python -m bench.distill --work W --seeds 48101 48102 48103 [--train_people 300 --eval_people 1000]

For each seed: tools.make_synthetic_data, bench.ceiling, then the teacher (train.py --config experiments/cpu15.yaml,
every fold) and, from it, four predictors, each scored on the eval answers as infer.py decides (its tuned
decision): one fold of the teacher (fold 0 of a copy), the teacher's ensemble (every fold, flip TTA), the student
(--teacher, --fold full, the same backbone) without and with the unlabelled eval photos (--distill_unlabeled_share),
and a student one size smaller (EfficientNet-Lite0) with them. Columns: eval macro-F1, eval / ceiling, mask /
gender / age F1, the training minutes (a student's: what it adds to the teacher's, its soft targets included),
infer.py seconds for the eval people, and the page's seconds a photo (one request, the server warm, the median of
--rounds). Then the mean over the seeds, and the share of the one-fold-to-ensemble gap each student recovers.
Each finished seed's rows are kept in W/distill.json, and a seed found there is not run again. Runs one thing at a
time: never time two things at once.
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
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from bench.ceiling import ceiling
from bench.page import ask, first_eval_photo, serve, timed
from src.metrics import scores
from src.run.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "experiments" / "cpu15.yaml"
STUDENTS = {  # name: train.py arguments beside --teacher teacher --fold full
    "student": [],
    "student + unlabelled": ["--distill_unlabeled_share", "0.25"],
    "Lite0 student + unlabelled": ["--distill_unlabeled_share", "0.25", "--model", "tf_efficientnet_lite0"],
}
FOLDER = {"student": "student", "student + unlabelled": "student_unl", "Lite0 student + unlabelled": "student_small"}


def run(*args) -> float:
    """Wall seconds of one entry point, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def scored(logs: Path, name: str, data: Path) -> dict:
    """infer.py's submission of run `name` (timed) against the eval answers."""
    seconds = run("infer.py", "--data_dir", data, "--log_dir", logs, "--run", name)
    answers = pd.read_csv(data / "eval_answers.csv").merge(pd.read_csv(RunDir(logs, name).submission), on="ImageID",
                                                           suffixes=("_true", "_pred"), validate="one_to_one")
    return scores(answers["ans_true"], answers["ans_pred"]) | dict(infer_s=seconds)


def page_seconds(logs: Path, name: str, rounds: int) -> float:
    photo = first_eval_photo(logs, name)
    proc, url = serve(logs, name, logs / f"{name}.app.log")
    try:
        ask(url, photo)  # the first request warms the models
        return statistics.median(timed(lambda: ask(url, photo)) for _ in range(rounds))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def one_fold(logs: Path, teacher: str) -> str:
    """A copy of the teacher that keeps fold 0 alone (its decision.json as it is)."""
    name = "teacher_fold0"
    shutil.rmtree(logs / name, ignore_errors=True)
    shutil.copytree(logs / teacher, logs / name, ignore=shutil.ignore_patterns("onnx", "submission.csv", "eval_*"))
    for k in RunDir(logs, name).folds()[1:]:
        shutil.rmtree(RunDir(logs, name).fold(k))
    return name


def one_seed(seed: int, a) -> list[dict]:
    data, logs = a.work / f"seed{seed}", a.work / f"logs{seed}"
    if not (data / "eval_answers.csv").is_file():
        run("-m", "tools.make_synthetic_data", "--out", data, "--seed", seed, "--train_people", a.train_people,
            "--eval_people", a.eval_people)
    ceiling_f1 = ceiling(data, seed)["eval_tuned"]["f1"]
    base = ["--data_dir", data, "--log_dir", logs, "--config", a.recipe, "--overwrite"]
    teacher_s = run("train.py", *base, "--name", "teacher")
    rows = [dict(what="teacher, fold 0", train_min=teacher_s / 4 / 60, **scored(logs, one_fold(logs, "teacher"), data),
                 page_s=page_seconds(logs, "teacher_fold0", a.rounds)),
            dict(what="teacher ensemble", train_min=teacher_s / 60, **scored(logs, "teacher", data),
                 page_s=page_seconds(logs, "teacher", a.rounds))]
    for what, extra in STUDENTS.items():
        name = FOLDER[what]
        seconds = run("train.py", *base, "--name", name, "--teacher", "teacher", "--fold", "full", *extra)
        rows.append(dict(what=what, train_min=seconds / 60, **scored(logs, name, data),
                         page_s=page_seconds(logs, name, a.rounds)))
    return [r | dict(seed=seed, ceiling=ceiling_f1) for r in rows]


def table(rows: list[dict]) -> str:
    lines = ["| seed | predictor | eval F1 | / ceiling | mask / gender / age F1 | train min | infer s | page s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['what']} | {r['f1']:.4f} | {r['f1'] / r['ceiling']:.3f} | "
                     f"{r['f1_mask']:.3f} / {r['f1_gender']:.3f} / {r['f1_age']:.3f} | {r['train_min']:.1f} | "
                     f"{r['infer_s']:.0f} | {r['page_s']:.2f} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> str:
    """The mean over the seeds of each predictor, and the share of the fold-0-to-ensemble gap each recovers."""
    df = pd.DataFrame(rows).assign(share=lambda d: d["f1"] / d["ceiling"])
    mean = df.groupby("what", sort=False)[["f1", "share", "train_min", "infer_s", "page_s"]].mean()
    one, ensemble = mean.loc["teacher, fold 0", "f1"], mean.loc["teacher ensemble", "f1"]
    lines = ["| predictor (mean of seeds) | eval F1 | / ceiling | against the ensemble | gap recovered | infer s | "
             "page s |", "|---|---|---|---|---|---|---|"]
    for what, r in mean.iterrows():
        gap = (r["f1"] - one) / (ensemble - one) if ensemble != one else float("nan")
        lines.append(f"| {what} | {r['f1']:.4f} | {r['share']:.3f} | {r['f1'] - ensemble:+.4f} | {gap:.0%} | "
                     f"{r['infer_s']:.0f} | {r['page_s']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="data and runs go here (seed<S>/, logs<S>/)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="generator seeds never tuned on")
    p.add_argument("--train_people", type=int, default=300)
    p.add_argument("--eval_people", type=int, default=1000)
    p.add_argument("--recipe", type=Path, default=RECIPE, help="the teacher's recipe, which the students share")
    p.add_argument("--rounds", type=int, default=5, help="page requests timed per predictor")
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    saved = a.work / "distill.json"  # each finished seed's rows: a seed found there is not run again
    done = json.loads(saved.read_text()) if saved.is_file() else []
    rows = []
    for seed in a.seeds:
        kept = [r for r in done if r["seed"] == seed]
        rows += kept or one_seed(seed, a)
        saved.write_text(json.dumps(rows + [r for r in done if r["seed"] not in a.seeds], indent=1))
    print(f"bench.distill {datetime.date.today()}  recipe {a.recipe.name}  seeds {a.seeds}  {a.train_people} train / "
          f"{a.eval_people} eval people")
    print(table(rows))
    print()
    print(summary(rows))


if __name__ == "__main__":
    main()
