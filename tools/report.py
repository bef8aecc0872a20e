"""Compare runs in one static HTML page:  python -m tools.report [--log_dir logs] [--out FILE]
                                              [--runs A B | --glob 'b3*'] [--answers eval_answers.csv] [--sort cv]
                                              [--study S [--storage URL]]

Writes <log_dir>/report.html (self-contained: images inline, opens from disk) and each run's errors.png.
The runs table has the settings that differ among the runs shown, CV and per-task F1 over all out-of-fold
rows, per-fold F1, and with --answers the eval score of each run's submission. Runs still training or with
missing files are shown as such. --study adds a sweep's study (sweep.py): its trials, optimisation history,
parameter importances and parallel coordinates, drawn by Optuna.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import contextlib
import fnmatch
import sys
from pathlib import Path


def chosen_runs(log_dir: Path, names, pattern: str) -> list:
    """The named runs (each must exist) as RunDirs, else every run in log_dir whose name matches the glob."""
    from src.run.rundir import RunDir, list_runs

    if names:
        runs = [RunDir(log_dir, n) for n in names]
        missing = [str(r.root) for r in runs if not r.exists]
        if missing:
            raise SystemExit(f"error: not a run (no config.yaml): {', '.join(missing)}")
        return runs
    return sorted((r for r in list_runs(log_dir) if fnmatch.fnmatch(r.name, pattern)), key=lambda r: r.name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log_dir", type=Path, default=Path("logs"))
    p.add_argument("--out", type=Path, help="default <log_dir>/report.html")
    p.add_argument("--runs", nargs="+", metavar="NAME", help="these runs (default: every run in log_dir)")
    p.add_argument("--glob", default="*", help="runs whose name matches this pattern (default *)")
    p.add_argument("--answers", type=Path, help="eval truth (ImageID,ans) to score each run's submission")
    p.add_argument("--sort", default="cv", help="row order: cv (best CV first), name or start (default cv)")
    p.add_argument("--study", help="add this sweep study (sweep.py --study) to the page")
    p.add_argument("--storage", default="", help="the study's storage URL (default: log_dir/sweeps.db)")
    p.add_argument("--cam_photos", type=int, default=64,
                   help="out-of-fold photos whose Grad-CAM maps give each run's face share (0: no maps); the worst "
                        "mistakes are shown beside their maps")
    a = p.parse_args(argv)

    import pandas as pd  # after parsing: --help costs none of these imports

    from src.errors import fail_cleanly
    from src.files import real
    from src.insight.comparison import SORTS, build_html, sort_runs, summarize
    from src.insight.study_page import study_section
    from src.run.atomic import save_text
    from src.run.rundir import report_file
    from src.sweep import study as studies

    if a.sort not in SORTS:
        p.error(f"--sort {a.sort!r} is not supported; choose one of: {', '.join(SORTS)}")
    if a.cam_photos < 0:
        p.error(f"--cam_photos must be 0 (no maps) or more, got {a.cam_photos}")
    if a.answers and not a.answers.is_file():
        p.error(f"--answers {a.answers}: file not found")
    runs = chosen_runs(a.log_dir, a.runs, a.glob)
    if not runs:
        raise SystemExit(f"error: no runs in {a.log_dir} match {a.glob!r}")
    sections = []
    if a.study:
        with fail_cleanly():
            study = studies.load_study(studies.open_storage(a.storage, a.log_dir, 60, create=False), a.study)
        sections.append(study_section(study))
    answers = pd.read_csv(a.answers) if a.answers else None
    out = a.out or report_file(a.log_dir)
    with contextlib.ExitStack() as held:  # the runs read (and their errors.png written) stay the same runs
        for run in runs:
            held.enter_context(run.reading())
        summaries = sort_runs([summarize(r, answers, a.cam_photos) for r in runs], a.sort)
        save_text(build_html(summaries, a.log_dir, answers is not None, sections), out)
    for s in summaries:
        cv = f"{s.cv['f1']:.4f}" if s.cv else "—"
        share = (" face share " + " / ".join(f"{s.face_share[t]:.2f}" for t in ("mask", "gender", "age"))
                 if s.face_share else "")
        print(f"{s.run.name:<24} CV {cv}  {s.status}{share}" + "".join(f"\n    note: {n}" for n in s.notes))
    print(f"report: {real(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
