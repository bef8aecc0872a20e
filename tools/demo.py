"""`make demo`: generate data (if absent), train the quick recipe, infer, score against the truth, and write
the run comparison logs/report.html.

    python -m tools.demo --data_dir data/synthetic [--name demo]
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(title, cmd, env=None):
    print(f"\n== {title}: {' '.join(map(str, cmd))}", flush=True)
    subprocess.run(list(map(str, cmd)), cwd=ROOT, check=True, env={**os.environ, **(env or {})})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, default=ROOT / "data" / "synthetic")
    p.add_argument("--name", default="demo")
    p.add_argument("--train_people", type=int, default=300)
    p.add_argument("--eval_people", type=int, default=100)
    a = p.parse_args()
    t0 = time.perf_counter()
    if not (a.data_dir / "train" / "train.csv").is_file():
        step("generate", [sys.executable, "-m", "tools.make_synthetic_data", "--out", a.data_dir, "--train_people",
                          a.train_people, "--eval_people", a.eval_people, "--seed", "0"])
    env = {"DATA_DIR": str(a.data_dir), "NAME": a.name, "RUN": a.name, "PYTHON": sys.executable}
    step("train", ["bash", "experiments/quick.sh", "--overwrite", "true"], env)
    step("infer", ["bash", "infer.sh"], env)

    import pandas as pd

    from src.files import read_json
    from src.labels import PROB_COLUMNS
    from src.metrics import evaluate
    from src.run.rundir import RunDir, prediction_files, report_file

    run = RunDir(ROOT / "logs", a.name)
    files = prediction_files(run.submission)
    answers = pd.read_csv(a.data_dir / "eval_answers.csv")
    probs = pd.read_csv(files["probs"])
    submission = pd.read_csv(files["submission"])
    assert (probs["ImageID"] == answers["ImageID"]).all() and (submission["ImageID"] == answers["ImageID"]).all()
    scores = evaluate(answers["ans"], probs[PROB_COLUMNS].to_numpy())
    cv = read_json(run.cv)
    minutes = (time.perf_counter() - t0) / 60
    print("\n| what | value |\n|---|---|")
    print(f"| CV macro-F1 (out-of-fold) | {cv['cv_f1']:.4f} |")
    print(f"| eval macro-F1 | {scores['f1']:.4f} |")
    print(f"| eval F1 mask / gender / age | {scores['f1_mask']:.3f} / {scores['f1_gender']:.3f} / "
          f"{scores['f1_age']:.3f} |")
    print(f"| eval accuracy | {scores['acc']:.4f} |")
    print(f"| wall time | {minutes:.1f} min |")
    print(f"| run folder | {run.root.relative_to(ROOT)} |")
    print(f"| submission | {files['submission'].relative_to(ROOT)} |")
    print(f"| preview | {files['preview'].relative_to(ROOT)} |")
    step("report", [sys.executable, "-m", "tools.report", "--log_dir", ROOT / "logs", "--answers",
                    a.data_dir / "eval_answers.csv"])
    print(f"\nThe report is {report_file(ROOT / 'logs')}: open it in a browser.")


if __name__ == "__main__":
    main()
