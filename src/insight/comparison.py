"""The run comparison: a summary of each run read from its folder, and one self-contained HTML page
(every image inline as a base64 PNG) with the runs table, what differs, and per run its curves, OOF
confusion matrix, per-class F1, settings changes and error gallery. Missing or half-written files
become a note on the page, never an exception."""
from __future__ import annotations

import base64
import html
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from src.config import parsing, policy
from src.engine.evaluation import age_error
from src.errors import ConfigError
from src.insight.gallery import save_gallery
from src.insight.oof import confident_errors
from src.labels import CLASS_NAMES, NUM_CLASSES, PROB_COLUMNS
from src.metrics import confusion, scores
from src.run.checkpoint import is_finished
from src.run.figures import confusion_figure, png_bytes, pyplot
from src.run.oof import full_run_note, read_oof
from src.run.rundir import RunDir, prediction_files
from src.files import read_json, read_yaml

ERRORS_PER_TASK = 8
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
SORTS = ("cv", "name", "start")


@dataclass
class RunSummary:
    run: RunDir
    settings: dict = field(default_factory=dict)  # config.yaml as saved, without name and the git fields
    commit: str = "?"
    dirty: bool = False
    start: str = ""
    status: str = "unknown"
    finished: list = field(default_factory=list)
    planned: int = 0
    n_folds: int = 0
    epochs: str = ""
    wall_s: float = 0.0
    cv: dict | None = None  # scores() over all OOF rows
    cv_tuned: float | None = None  # cv.json's cross-fitted macro-F1 with the tuned decision (every fold finished)
    fold_f1: dict = field(default_factory=dict)
    age_mae: float | None = None  # a number age head's mean absolute error in years, out of fold
    explainers: object | None = None  # the run's fold models for Grad-CAM maps (src/insight/cam.py), when asked for
    face_share: dict | None = None  # each task's map mass inside the face box, over a sample of out-of-fold photos
    eval: dict | None = None
    changes: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what is missing or unreadable
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    oof: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def heads(self) -> str:
        return str(self.settings.get("heads", "joint"))


def start_time(run: RunDir) -> str:
    """The first timestamp of train.log, else config.yaml's modification time."""
    if run.train_log.is_file():
        with open(run.train_log, errors="replace") as f:
            match = STAMP.match(f.readline())
        if match:
            return match.group(1)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.config.stat().st_mtime))


def recipe_paths(names) -> list[Path]:
    """Saved recipe paths, relative to where train.py ran: the working directory or the repository."""
    out = []
    for name in names or []:
        p = Path(name)
        out.append(p if p.is_file() or p.is_absolute() else policy.REPO_ROOT / p)
    return out


def read_settings(s: RunSummary):
    """config.yaml as saved (read raw: a run of another version may hold keys this one lacks), and the folds."""
    saved = read_yaml(s.run.config) or {}
    s.commit, s.dirty = str(saved.get("git_commit", "?")), bool(saved.get("git_dirty", False))
    s.settings = {k: v for k, v in saved.items() if k not in parsing.SAVED_EXTRA and k != "name"}
    s.n_folds = int(s.settings.get("n_folds", 0))
    fold = str(s.settings.get("fold", "all"))
    wanted = set(range(s.n_folds)) if fold == "all" else {int(fold)} | set(s.run.folds())
    s.planned = len(wanted)
    for k in sorted(wanted):
        try:
            if is_finished(s.run.last(k)):
                s.finished.append(k)
        except Exception as e:  # a damaged last.pt: the fold counts as unfinished
            s.notes.append(f"fold {k}: {e}")


def read_changes(s: RunSummary):
    """The same lines train.log opens with: keys changed from the defaults and from the recipes."""
    cfg = policy.from_saved(s.run.config)
    recipes = recipe_paths((read_yaml(s.run.config) or {}).get("recipes"))
    gone = [str(p) for p in recipes if not p.is_file()]
    s.changes = policy.changes(cfg, [p for p in recipes if p.is_file()])
    if gone:
        s.notes.append(f"recipe file(s) no longer found, changes shown against the defaults only: {', '.join(gone)}")


def read_status(s: RunSummary):
    """finished, training (from the fold locks live trainers hold), or stopped with folds left."""
    if s.planned and len(s.finished) == s.planned:
        s.status = "finished"
        return
    busy = s.run.training_folds(s.n_folds)
    s.status = (f"training (fold {', '.join(map(str, busy))})" if busy else
                f"stopped: {s.planned - len(s.finished)} fold(s) unfinished")
    try:
        trial = read_json(s.run.sweep) if s.run.sweep.is_file() else None
        if not busy and trial and trial["state"] == "pruned":
            s.status = f"pruned by study {trial['study']} (trial {trial['trial']}) after epoch {trial['epoch']}"
    except (OSError, ValueError, KeyError, TypeError):
        s.notes.append(f"{s.run.sweep.name} is unreadable")


def read_metrics(s: RunSummary):
    if not s.run.metrics.is_file():
        s.notes.append(f"no {s.run.metrics.name} yet")
        return
    s.metrics = pd.read_csv(s.run.metrics)
    per_fold = s.metrics.groupby("fold")["epoch"].max() + 1
    s.epochs = " / ".join(f"{int(v)}" for v in per_fold.to_numpy()) + f" of {s.settings.get('epochs', '?')}"
    s.wall_s = float(s.metrics["time_s"].sum()) if "time_s" in s.metrics else 0.0


def read_oof_scores(s: RunSummary):
    s.oof = read_oof(s.run)
    if s.oof.empty:
        teachers = s.settings.get("teacher") or []
        s.notes.append(full_run_note(teachers) if s.settings.get("fold") == "full" else "no out-of-fold predictions yet")
        return
    pred = s.oof[PROB_COLUMNS].to_numpy().argmax(1)
    s.cv = scores(s.oof["label"], pred)
    if s.run.cv.is_file():
        try:
            s.cv_tuned = read_json(s.run.cv).get("cv_f1_tuned")
        except (OSError, ValueError, AttributeError):
            s.notes.append(f"{s.run.cv.name} is unreadable")
    s.fold_f1 = {int(k): scores(g["label"], pred[g.index])["f1"] for k, g in s.oof.groupby("fold")}
    s.age_mae = age_error(s.oof)


def read_eval(s: RunSummary, answers: pd.DataFrame | None):
    if answers is None:
        return
    files = prediction_files(s.run.submission)
    source = files["probs"] if files["probs"].is_file() else files["submission"]
    if not source.is_file():
        s.notes.append("no submission to score (run infer.py)")
        return
    pred = pd.read_csv(source)
    if "ans" not in pred:
        pred["ans"] = pred[PROB_COLUMNS].to_numpy().argmax(1)
    merged = answers.merge(pred[["ImageID", "ans"]], on="ImageID", how="inner", suffixes=("_true", "_pred"))
    if len(merged) != len(answers):
        s.notes.append(f"{source.name} covers {len(merged)} of the {len(answers)} answers; eval score left out")
        return
    s.eval = scores(merged["ans_true"], merged["ans_pred"])


def read_maps(s: RunSummary, photos: int):
    """The run's fold models for Grad-CAM, and its face share over `photos` out-of-fold photos."""
    if not photos or s.oof.empty:
        return
    from src.config.schema import MAX_IMAGE_PIXELS
    from src.insight.cam import FoldExplainers, face_share
    from src.predict.plans import plan_run

    s.explainers = FoldExplainers(plan_run(s.run.log_dir, s.run.name, "auto"), s.run.log_dir, MAX_IMAGE_PIXELS)
    s.face_share = face_share(s.explainers, s.oof, photos)


def summarize(run: RunDir, answers: pd.DataFrame | None = None, cam_photos: int = 0) -> RunSummary:
    """Everything the report shows of one run; each part that fails becomes a note instead. `cam_photos`: the
    out-of-fold photos whose Grad-CAM maps give the face share (0: no maps)."""
    s = RunSummary(run)
    parts = dict(start=lambda: setattr(s, "start", start_time(run)), settings=lambda: read_settings(s),
                 changes=lambda: read_changes(s), status=lambda: read_status(s), metrics=lambda: read_metrics(s),
                 oof=lambda: read_oof_scores(s), eval=lambda: read_eval(s, answers),
                 maps=lambda: read_maps(s, cam_photos))
    for what, read in parts.items():
        try:
            read()
        except Exception as e:  # a half-written or foreign file must not take the whole report down
            s.notes.append(f"{what}: {type(e).__name__}: {e}")
    return s


def differing_keys(summaries: list[RunSummary]) -> list[str]:
    keys = dict.fromkeys(k for s in summaries for k in s.settings)
    return [k for k in keys if len({repr(s.settings.get(k, "—")) for s in summaries}) > 1]


def sort_runs(summaries: list[RunSummary], by: str) -> list[RunSummary]:
    if by not in SORTS:
        raise ConfigError(f"sort {by!r}; choose one of: {', '.join(SORTS)}")
    if by == "cv":
        return sorted(summaries, key=lambda s: -(s.cv["f1"] if s.cv else -1))
    return sorted(summaries, key=lambda s: s.run.name if by == "name" else s.start)


def png_uri(fig=None, path: Path | None = None) -> str:
    """A figure (closed here) or a PNG file as a data: URI."""
    if fig is not None:
        data = png_bytes(fig)
    else:
        data = path.read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def curves_figure(metrics: pd.DataFrame):
    """Per fold: train/val loss, val macro-F1 and val F1 of each task against the epoch."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    panels = [("loss (train dashed)", ["val_loss", "train_loss"]), ("val macro-F1", ["val_f1"]),
              ("val F1 mask", ["val_f1_mask"]), ("val F1 gender", ["val_f1_gender"]), ("val F1 age", ["val_f1_age"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 2.8), layout="constrained")
    for ax, (title, columns) in zip(axes, panels):
        for k, g in metrics.groupby("fold"):
            colour = f"C{int(k)}"
            for col, style in zip(columns, ("-", "--")):
                if col in g:
                    h = g[["epoch", col]].dropna()  # epochs not validated (val_every) have no val_* values
                    ax.plot(h["epoch"], h[col], style, color=colour, marker=".", label=f"fold {k}" if style == "-"
                            else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    return fig


def error_maps(s: RunSummary, errors: pd.DataFrame) -> dict:
    """(path, task) -> the input its fold's model saw with that task's map beside it, for the gallery's mistakes."""
    from src.insight.cam import TASKS, overlay

    if s.explainers is None or errors.empty:
        return {}
    rows = s.oof.drop_duplicates("path").set_index("path").loc[errors["path"]]
    inputs, maps, _ = s.explainers.explain(errors["path"].tolist(), rows["fold"].to_numpy(), rows["pred"].to_numpy())
    return {(path, task): np.concatenate([image, overlay(image, triple[TASKS.index(task)])], 1)
            for path, task, image, triple in zip(errors["path"], errors["task"], inputs, maps)}


def errors_gallery(s: RunSummary) -> Path | None:
    """(Re)write the run's errors.png from its OOF rows: the most confident mistakes of each task, each beside the
    map of where its fold's model looked for that task when the run's maps were asked for."""
    if s.oof.empty:
        return None
    errors = confident_errors(s.oof, ERRORS_PER_TASK)
    maps = error_maps(s, errors)
    rows = []
    for task in ("mask", "gender", "age"):
        picked = errors[errors["task"] == task]
        tiles = [(maps.get((r.path, task), r.path),
                  f"label {r.label}\npred {r.pred} {r.prob:.2f}\n{Path(r.path).parent.name.split('_')[0]} "
                  f"{Path(r.path).stem}") for r in picked.itertuples()]
        rows.append((f"{task}: the {len(tiles)} most confident wrong out-of-fold predictions"
                     + (" (each beside its map)" if maps else ""), tiles))
    save_gallery(rows, s.run.errors, cols=ERRORS_PER_TASK)
    return s.run.errors


def esc(v) -> str:
    return html.escape(str(v))


def f3(v) -> str:
    return "—" if v is None else f"{v:.4f}"


CSS = """body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top;text-align:left}th{background:#eef}
.num{text-align:right;font-variant-numeric:tabular-nums}.diff{font-family:monospace;font-size:12px;white-space:pre-wrap}
.note{color:#a40}.run{border-top:3px solid #99c;margin-top:2em}.row{display:flex;gap:1.5em;align-items:flex-start}
pre{background:#f6f6f6;padding:.5em;font-size:12px}img{max-width:100%}"""


def runs_table(summaries: list[RunSummary], diff_keys: list[str], with_eval: bool) -> str:
    head = ["run", "start", "commit", "status", "backbone", "input", "heads", "folds", "epochs", "CV macro-F1",
            "CV tuned", "CV mask", "CV gender", "CV age", "CV age off (years)", "face share mask / gender / age",
            "per-fold F1", "wall (train epochs)"]
    head += ["eval F1"] if with_eval else []
    head += [f"what differs ({len(diff_keys)} keys)"]
    rows = []
    for s in summaries:
        cv = s.cv or {}
        input_size = f"{s.settings.get('img_height', '?')}x{s.settings.get('img_width', '?')}"
        folds = f"{len(s.finished)}/{s.planned}" + (f" of {s.n_folds}" if s.planned < s.n_folds else "")
        per_fold = " ".join(f"{k}:{v:.3f}{'' if k in s.finished else '*'}" for k, v in s.fold_f1.items())
        cells = [f'<a href="#run-{esc(s.run.name)}">{esc(s.run.name)}</a>', esc(s.start),
                 esc(s.commit[:8] + ("+dirty" if s.dirty else "")), esc(s.status),
                 esc(s.settings.get("model", "?")), esc(input_size), esc(s.heads), esc(folds), esc(s.epochs),
                 f'<b>{f3(cv.get("f1"))}</b>', f3(s.cv_tuned), f3(cv.get("f1_mask")), f3(cv.get("f1_gender")),
                 f3(cv.get("f1_age")), f"{s.age_mae:.2f}" if s.age_mae is not None else "—", share_cell(s),
                 esc(per_fold),
                 esc(f"{s.wall_s / 60:.1f} min")]
        if with_eval:
            cells.append(f3(s.eval["f1"]) if s.eval else "—")
        cells.append('<span class="diff">' + esc("\n".join(f"{k}: {s.settings.get(k, '—')}" for k in diff_keys))
                     + "</span>")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"


def share_cell(s: RunSummary) -> str:
    share = s.face_share
    if share is None:
        return "—"
    return esc(" / ".join(f"{share[t]:.2f}" for t in ("mask", "gender", "age")) + f" ({share['photos']} photos)")


def per_class_table(oof: pd.DataFrame) -> str:
    pred = oof[PROB_COLUMNS].to_numpy().argmax(1)
    f1 = f1_score(oof["label"], pred, labels=list(range(NUM_CLASSES)), average=None, zero_division=0)
    support = np.bincount(oof["label"], minlength=NUM_CLASSES)
    rows = "".join(f"<tr><td>{k}</td><td>{esc(CLASS_NAMES[k])}</td><td class=num>{support[k]}</td>"
                   f"<td class=num>{f1[k]:.3f}</td></tr>" for k in range(NUM_CLASSES))
    return "<table><tr><th>class</th><th>name</th><th>images</th><th>F1</th></tr>" + rows + "</table>"


def run_section(s: RunSummary) -> str:
    parts = [f'<div class="run" id="run-{esc(s.run.name)}"><h2>{esc(s.run.name)}</h2>',
             f"<p>{esc(s.run.root)} · {esc(s.status)} · commit {esc(s.commit)}{' (dirty)' if s.dirty else ''}</p>"]
    parts += [f'<p class="note">{esc(n)}</p>' for n in s.notes]
    if s.changes:
        parts.append("<h3>Settings changed</h3><pre>" + esc("\n".join(s.changes)) + "</pre>")
    if not s.metrics.empty:
        parts.append(f'<h3>Learning curves</h3><img alt="learning curves" src="{png_uri(curves_figure(s.metrics))}">')
    if not s.oof.empty:
        cm = confusion(s.oof["label"], s.oof[PROB_COLUMNS].to_numpy().argmax(1))
        title = f"{s.run.name}: out-of-fold confusion, {len(s.oof)} images, folds {sorted(s.fold_f1)}"
        parts.append('<h3>Out-of-fold confusion matrix and per-class F1</h3><div class="row">'
                     f'<img alt="confusion matrix" style="width:620px" src="{png_uri(confusion_figure(cm, title))}">'
                     f"{per_class_table(s.oof)}</div>")
        errors = errors_gallery(s)
        parts.append(f'<h3>Most confident mistakes ({esc(errors.name)})</h3>'
                     f'<img alt="error gallery" src="{png_uri(path=errors)}">')
    return "\n".join(parts) + "</div>"


def safe_section(s: RunSummary) -> str:
    try:
        return run_section(s)
    except Exception as e:  # one run's broken files leave the other runs' sections intact
        return (f'<div class="run" id="run-{esc(s.run.name)}"><h2>{esc(s.run.name)}</h2>'
                f'<p class="note">section failed: {esc(type(e).__name__)}: {esc(e)}</p></div>')


def build_html(summaries: list[RunSummary], log_dir, with_eval: bool, sections: list[str] = ()) -> str:
    """The page: the runs table, each run's section, then `sections` (a sweep's study)."""
    diff_keys = differing_keys(summaries)
    body = [f"<h1>maskcls runs in {esc(log_dir)}</h1>",
            f"<p>{len(summaries)} run(s), written {time.strftime('%Y-%m-%d %H:%M:%S')}. CV is macro-F1 over all "
            "out-of-fold rows written so far (best-F1 epoch of each fold; * marks a fold still unfinished); "
            "per-task F1 of mask, gender and age over the same rows.</p>",
            runs_table(summaries, diff_keys, with_eval)]
    body += [safe_section(s) for s in summaries] + list(sections)
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>maskcls report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
