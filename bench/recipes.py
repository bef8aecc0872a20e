"""Compare recipes end to end on one dataset with known eval answers: train, infer, score, time.

    python -m bench.recipes --data_dir /tmp/d --log_dir /tmp/cmp --recipe experiments/cpu15.yaml \
        --variant "base|" --variant "joint|--heads joint" --variant "pseudo||--pseudo_threshold 0.9"

A variant is "name|extra train arguments|extra pseudo arguments". With a third part (even empty), a
pseudo-labelling round follows: the trained run labels the eval images, a student with the same recipe
(plus those arguments) trains on them, and the student is scored; the wall time covers both.
Prints one table row per variant: the CV macro-F1 over all out-of-fold rows with argmax and with the tuned decision
(cross-fitted), eval macro-F1 with argmax and with the run's offsets, the rule infer applied (tuned where every
fold finished and wrote decision.json, else argmax) and the per-task eval F1 of the submission (which follows that
rule), the CV of that rule - eval of the submission, and the wall
time of train + infer. Runs one at a time: never time two things at once.
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
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(map(str, args))}\n{proc.stderr[-3000:]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True, help="generated data (eval_answers.csv beside eval/)")
    p.add_argument("--log_dir", type=Path, required=True)
    p.add_argument("--recipe", required=True, help="the recipe every variant starts from")
    p.add_argument("--variant", action="append", required=True, help="name|train args[|pseudo args]")
    a = p.parse_args(argv)
    import numpy as np  # after the arguments: --help and a bad one cost none of these imports
    import pandas as pd

    from src import decision
    from src.files import read_json
    from src.labels import PROB_COLUMNS
    from src.metrics import scores
    from src.run.rundir import RunDir, prediction_files

    answers = pd.read_csv(a.data_dir / "eval_answers.csv")
    print(f"setup: {datetime.date.today()}  cores={len(os.sched_getaffinity(0))}  recipe={a.recipe}  "
          f"data={a.data_dir}  log_dir={a.log_dir}", flush=True)
    print("| variant | extra arguments | CV argmax (OOF rows) | CV tuned | eval argmax | eval tuned | rule | "
          "submission mask / gender / age | CV - eval | train + infer |\n|---|---|---|---|---|---|---|---|---|---|",
          flush=True)
    for spec in a.variant:
        name, train_args, *pseudo = spec.split("|")
        common = ["--config", a.recipe, "--data_dir", a.data_dir, "--log_dir", a.log_dir, *shlex.split(train_args)]
        t0 = time.perf_counter()
        run("train.py", *common, "--name", name, "--overwrite")
        scored = name
        if pseudo:
            scored = f"{name}_pseudo"
            run("pseudo_train.py", *common, "--name", scored, "--run", name, "--overwrite", *shlex.split(pseudo[0]))
        run("infer.py", "--data_dir", a.data_dir, "--log_dir", a.log_dir, "--run", scored)
        minutes = (time.perf_counter() - t0) / 60
        run_dir = RunDir(a.log_dir, scored)
        probs = pd.read_csv(prediction_files(run_dir.submission)["probs"])
        submitted = pd.read_csv(run_dir.submission)
        assert (probs["ImageID"] == answers["ImageID"]).all() and (submitted["ImageID"] == answers["ImageID"]).all()
        p = probs[PROB_COLUMNS].to_numpy()
        # decision.json and the tuned CV exist once every fold has trained (not with --fold k)
        chosen = read_json(run_dir.decision) if run_dir.decision.is_file() else None
        plain = scores(answers["ans"], decision.decide(p, None))["f1"]
        tuned = f"{scores(answers['ans'], decision.decide(p, np.asarray(chosen['offsets'])))['f1']:.4f}" \
            if chosen else "-"
        s = scores(answers["ans"], submitted["ans"])
        cv = read_json(run_dir.cv)
        extra = train_args + (f" + pseudo {pseudo[0]}".rstrip() if pseudo else "")
        rule = "tuned" if chosen else "argmax"
        cv_chosen = cv["cv_f1_tuned"] if rule == "tuned" else cv["cv_f1"]
        cv_tuned = f"{cv['cv_f1_tuned']:.4f}" if "cv_f1_tuned" in cv else "-"
        print(f"| {name} | {extra or '(recipe)'} | {cv['cv_f1']:.4f} ({cv['oof_rows']}) | {cv_tuned} | "
              f"{plain:.4f} | {tuned} | {rule} | "
              f"{s['f1_mask']:.3f} / {s['f1_gender']:.3f} / {s['f1_age']:.3f} | {cv_chosen - s['f1']:+.3f} | "
              f"{minutes:.1f} min |", flush=True)

if __name__ == "__main__":
    main()
