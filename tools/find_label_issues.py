"""Rank the training labels a finished run disagrees with, to review by eye and fix in corrections.csv.

    python -m tools.find_label_issues --data_dir D --run R [--log_dir logs] [--top 20] [--suggest FILE]
                                      [--truth D/label_noise.csv]

Needs every fold of R finished: the out-of-fold probabilities then cover every training image. Writes
R/label_issues.csv (id, file, issue, given, suggested, score; most suspicious first) and R/label_issues.png
(the top suspects; all of a person's photos for gender, age and swap issues). `--suggest FILE` writes the top
rows that corrections.csv can express (gender, swap) in its format, for you to review and append; age and
single-image mask suspects are listed for fixing by hand. corrections.csv itself is never edited, and the
eval labels are never touched. `--truth` scores the ranking against generated data's label_noise.csv.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
from src.config import policy
from src.data.tables import load_train
from src.errors import DataError, RunNotFound, fail_cleanly
from src.insight.gallery import save_gallery
from src.insight.label_issues import ISSUE_KINDS, corrections_rows, find_issues
from src.insight.oof import image_key
from src.labels import CLASS_NAMES
from src.run.atomic import save_csv
from src.run.oof import read_oof
from src.run.rundir import RunDir
from src.files import real


def missing_folds(run: RunDir, n_folds: int) -> list[int]:
    from src.run.checkpoint import is_finished  # imports torch: here, so that --help starts without it

    return [k for k in range(n_folds) if not (is_finished(run.last(k)) and run.oof(k).is_file())]


def training_images(data_dir, run: RunDir, cfg) -> pd.DataFrame:
    """Every training image with its person, photo, age, the run's out-of-fold probabilities and the label the
    run trained on (corrections and the age filter applied: a 59-year-old the model calls 60+ agrees with it)."""
    corrections = cfg.corrections
    if corrections.lower() != "none" and not Path(corrections).is_file() and (ROOT / corrections).is_file():
        corrections = str(ROOT / corrections)  # saved relative to the repository, where train.py ran
    table = load_train(data_dir, corrections, cfg.age_filter, None, cfg.seed)
    oof = read_oof(run, range(cfg.n_folds))
    mine = table[["path", "person_id", "photo", "age", "train_label"]].rename(columns={"train_label": "label"})
    merged = mine.assign(key=table["path"].map(image_key)).merge(
        oof.drop(columns=["path", "label"]).assign(key=oof["path"].map(image_key)), on="key", how="outer",
        indicator=True)
    unmatched = merged[merged["_merge"] != "both"]
    if len(unmatched):
        raise DataError([f"{len(unmatched)} image(s) are in only one of {data_dir} and {run.root}'s out-of-fold "
                         f"predictions (first: {unmatched['key'].iloc[0]}); pass the data_dir the run was trained on"])
    return merged.drop(columns=["key", "_merge"])


def gallery_rows(issues: pd.DataFrame, images: pd.DataFrame) -> list:
    photos = images.groupby("person_id")
    rows = []
    for rank, r in enumerate(issues.itertuples(), 1):
        heading = f"#{rank}  {r.issue}  {r.id}: given {r.given}, suggested {r.suggested}  (score {r.score:.3f})"
        if r.file:
            tiles = [(r.file, Path(r.file).stem)]
        else:
            person = photos.get_group(r.id)
            tiles = [(p, f"{photo}\n{CLASS_NAMES[label]}") for p, photo, label in zip(person["path"], person["photo"],
                                                                                      person["label"])]
        rows.append((heading, tiles))
    return rows


def score_against(issues: pd.DataFrame, truth: pd.DataFrame):
    """Recall of the injected errors within the top 2N by kind, and precision in the top N (N injected)."""
    n = len(truth)
    found = {(str(i), k) for i, k in zip(issues["id"], issues["issue"])}
    top2 = {(str(i), k) for i, k in zip(issues["id"].head(2 * n), issues["issue"].head(2 * n))}
    injected = {(str(i), k) for i, k in zip(truth["id"], truth["kind"])}
    print(f"truth: {n} injected errors; {len(issues)} issues flagged")
    for kind, group in truth.groupby("kind"):
        pairs = {(str(i), kind) for i in group["id"]}
        print(f"  recall@2N {kind}: {len(pairs & top2)}/{len(pairs)} = {len(pairs & top2) / len(pairs):.2f}"
              f"  (flagged anywhere: {len(pairs & found)})")
    print(f"  recall@2N all: {len(injected & top2)}/{n} = {len(injected & top2) / max(n, 1):.2f}")
    head = list(zip(issues["id"].astype(str).head(n), issues["issue"].head(n)))
    hits = sum(pair in injected for pair in head)
    print(f"  precision@N: {hits}/{n} = {hits / max(n, 1):.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="the training data the run was trained on")
    p.add_argument("--run", required=True, help="a run with every fold finished")
    p.add_argument("--log_dir", default="logs")
    p.add_argument("--top", type=int, default=20, help="suspects in the gallery and in --suggest (default 20)")
    p.add_argument("--suggest", type=Path, help="write the top fixable rows here in corrections.csv's format")
    p.add_argument("--truth", type=Path, help="label_noise.csv of generated data: print recall and precision")
    a = p.parse_args(argv)
    if a.top < 1:
        p.error(f"--top must be at least 1, got {a.top}")
    with fail_cleanly():
        run = RunDir(a.log_dir, a.run)
        if not run.exists:
            raise RunNotFound(f"run {run.root}: not found (no {run.config.name})")
        cfg = policy.from_saved(run.config)
        missing = missing_folds(run, cfg.n_folds)
        if missing:
            raise RunNotFound(f"run {run.root}: fold(s) {', '.join(map(str, missing))} of {cfg.n_folds} not "
                                    f"finished; the finder needs out-of-fold probabilities for every training image. "
                                    f"Train them: python train.py --name {a.run} --fold K --resume (or --fold all)")
        if a.suggest and cfg.corrections != "none" and real(a.suggest) == real(cfg.corrections):
            raise policy.ConfigError(f"--suggest {a.suggest} is the corrections file itself, which the finder "
                                         f"never edits: write the suggestions elsewhere, then append what you accept")
        images = training_images(a.data_dir, run, cfg)
        issues = find_issues(images)
        save_csv(issues, run.label_issues, float_format="%.4f")
        top = issues.head(a.top)
        save_gallery(gallery_rows(top, images) or [("no label issues found", [])], run.label_issues_gallery, cols=7)
        counts = issues["issue"].value_counts().reindex(ISSUE_KINDS, fill_value=0)
        print(f"{len(issues)} suspected label issues in {images['person_id'].nunique()} people / {len(images)} images: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print(top.to_string(index=False, max_colwidth=60) if len(top) else "(none)")
        print(f"ranked list: {run.label_issues}\ngallery: {run.label_issues_gallery}")
        if a.suggest:
            rows, by_hand = corrections_rows(issues, a.top)
            save_csv(rows, a.suggest)
            print(f"suggested corrections: {a.suggest} ({len(rows)} rows; review them, then append the ones you "
                  f"accept to corrections.csv)")
            if len(by_hand):
                print(f"not in {a.suggest}: {len(by_hand)} top suspects corrections.csv cannot express "
                      f"({', '.join(sorted(set(by_hand['issue'])))}); review them in {run.label_issues.name} and fix "
                      f"by hand (an age in train.csv, a photo's name, or a corrections.csv row to remove)")
        if a.truth:
            score_against(issues, pd.read_csv(a.truth, dtype={"id": str}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
