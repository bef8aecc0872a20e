"""app.py's page: try finished runs on photos (dropped, or taken with the webcam), and look at a run.

Each photo goes through src/predict/photos.py's Predictor, the path predict.py takes (engine, TTA, decision offsets
and cut points), and gets its decision, the probabilities of each task as bars, the input the model saw and its mask,
gender and age maps (src/insight/cam.py). A photo that cannot be used gets its message and the others go on: a file
that is not an image, an empty one, a decompression bomb over max_image_pixels; a JPEG over max_image_pixels is
decoded at a half, a quarter or an eighth of its size instead (OpenCV reduces it inside the decoder), and says so.
The run tab shows the run folder's own files: its settings, CV per fold and per task, the out-of-fold confusion
matrix and its worst mistakes (errors.png, drawn by python -m tools.report).
"""
from __future__ import annotations

import html
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from src.config.schema import AppConfig
from src.data.images import IMAGE_EXTS, REDUCED, fitting_reduction
from src.errors import ConfigError, first_line
from src.files import irregular, read_document, read_json, read_yaml
from src.labels import CLASS_NAMES, TASK_NAMES
from src.predictions import YEARS
from src.run.figures import confusion_figure, png_bytes, pyplot
from src.run.oof import full_run_note, read_oof

log = logging.getLogger("maskcls")


def fitted(path: str, max_pixels: int, folder: Path) -> tuple[str, str]:
    """(the photo to predict, a note): a JPEG over max_image_pixels decoded at the largest of 1/2, 1/4, 1/8 of its
    size that fits and saved into `folder` (PNG, lossless), which then passes the one limit as any photo does; any
    other photo as it is."""
    reduction = fitting_reduction(path, max_pixels)
    if reduction is None:
        return path, ""
    scale, (width, height) = reduction
    image = cv2.imdecode(np.fromfile(path, np.uint8), REDUCED[scale])
    if image is None:
        return path, ""
    small = folder / f"{Path(path).stem}.reduced.png"
    cv2.imwrite(str(small), image)
    return str(small), (f"{width}x{height} is over max_image_pixels {max_pixels:,}: decoded at 1/{scale} "
                        f"({image.shape[1]}x{image.shape[0]}) before predicting")


def bars(row: pd.Series) -> np.ndarray:
    """The task probabilities of one photo as horizontal bars (an RGB image)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 1.6))
    for ax, (task, names) in zip(axes, TASK_NAMES.items()):
        values = [float(row[f"p_{task}_{n}"]) for n in names]
        ax.barh(range(len(names)), values, color=["#2b7bba" if v == max(values) else "#9ec5e8" for v in values])
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(task, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    data = png_bytes(fig, dpi=80)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


class Page:
    """The runs of one AppConfig, opened once: the Predictor (engines, decision) and the first run's explainer."""

    def __init__(self, cfg: AppConfig, plans):
        from src.predict.photos import Predictor

        self.cfg, self.plans = cfg, plans
        self.predictor = Predictor(cfg, plans).open()
        self.explainer = None
        if cfg.cam:
            from src.insight.cam import RunExplainer

            self.explainer = RunExplainer(plans[0], self.predictor.device, cfg.log_dir, cfg.max_image_pixels)
        self.notes = [f"run {p.name}: {p.used()}" for p in plans]

    def predict(self, files) -> tuple[str, list]:
        """(markdown: each photo's decision or message, gallery: (picture, caption) of each predicted photo)."""
        paths = [str(getattr(f, "name", f)) for f in (files or []) if f]
        if not paths:
            return "Drop one or more photos, or take one with the webcam.", []
        lines, gallery = [f"- {html.escape(n)}" for n in self.notes if "still being trained" in n], []
        if len(paths) > self.cfg.max_photos:
            lines.append(f"- {len(paths) - self.cfg.max_photos} photo(s) left out: at most {self.cfg.max_photos} "
                         f"a request (--max_photos)")
            paths = paths[: self.cfg.max_photos]
        with tempfile.TemporaryDirectory(prefix="maskcls-page-") as tmp:
            fitted_paths = [fitted(p, self.cfg.max_image_pixels, Path(tmp)) for p in paths]
            found = [(p, None) for p, _ in fitted_paths]
            rows = self.predictor.rows(found)
            pictures = self.pictures(rows)
            for i, (original, (_, note)) in enumerate(zip(paths, fitted_paths)):
                name = html.escape(Path(original).name)
                row = rows.iloc[i]
                if row["error"]:
                    problem = str(row["error"]).replace(f"{found[i][0]}: ", "")  # the upload's temp path says nothing
                    lines.append(f"- **{name}**: cannot be predicted: {html.escape(problem)}")
                    continue
                k = int(row["class"])
                years = f", about {row[YEARS]:.0f} years" if pd.notna(row.get(YEARS)) else ""
                lines.append(f"- **{name}**: class {k}, **{CLASS_NAMES[k]}**{years}"
                             + (f" ({html.escape(note)})" if note else ""))
                picture = pictures[i] if i in pictures else bars(row)  # bars only where no maps were drawn
                gallery.append((picture, f"{Path(original).name}: {CLASS_NAMES[k]}"))
        return "\n".join(lines), gallery

    def pictures(self, rows: pd.DataFrame) -> dict[int, np.ndarray]:
        """Row -> the input the model saw, its three maps and the bars below, for every predicted row."""
        ok = [i for i in range(len(rows)) if not rows.iloc[i]["error"]]
        if self.explainer is None or not ok:
            return {}
        strips = self.explainer.pictures(rows.iloc[ok]["path"].tolist(), rows.iloc[ok]["class"].astype(int))
        out = {}
        for i, top in zip(ok, strips):
            below = bars(rows.iloc[i])
            scale = below.shape[1] / top.shape[1]  # the four panels as wide as the bars
            top = cv2.resize(top, (below.shape[1], round(top.shape[0] * scale)), interpolation=cv2.INTER_LINEAR)
            width = max(top.shape[1], below.shape[1])
            pad = [np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255) for a in (top, below)]
            out[i] = np.concatenate(pad, 0)
        return out

    def run_overview(self) -> tuple[str, list]:
        """(markdown: settings, CV per fold and task, notes; images: the confusion matrix and errors.png) of the
        first run, from its own files."""
        plan = self.plans[0]
        run = plan.run
        parts = [f"### Run {html.escape(plan.name)}", *(f"- {html.escape(n)}" for n in self.notes)]
        if run.cv.is_file():
            cv = read_json(run.cv)
            parts.append("\n| fold | macro-F1 |\n|---|---|" + "".join(f"\n| {k} | {v:.4f} |"
                                                                       for k, v in cv.get("fold_f1", {}).items()))
            tasks = " / ".join(f"{cv.get(f'cv_f1_{t}', float('nan')):.3f}" for t in TASK_NAMES)
            tuned = f"; tuned (cross-fitted) {cv['cv_f1_tuned']:.4f}" if "cv_f1_tuned" in cv else ""
            parts.append(f"\nCV macro-F1 {cv['cv_f1']:.4f}{tuned}; mask / gender / age {tasks}"
                         + (f"; age off by {cv['cv_age_mae']:.2f} years" if "cv_age_mae" in cv else ""))
        else:
            parts.append("\n" + full_run_note(plan.cfg.teacher) if plan.cfg.fold == "full"
                         else "\nno cv.json yet: the run's folds have not all finished")
        parts.append("\n**Settings** (config.yaml, each path of the server cut to its last part)\n\n```yaml\n"
                     + yaml.safe_dump(unplaced(read_yaml(run.config)), sort_keys=False) + "```")
        images = []
        oof = read_oof(run)
        if not oof.empty:
            from src.metrics import confusion

            figure = confusion_figure(confusion(oof["label"], oof["pred"]), f"{plan.name}: out-of-fold rows")
            images.append((cv2.imdecode(np.frombuffer(png_bytes(figure), np.uint8), cv2.IMREAD_COLOR)[..., ::-1],
                           "out-of-fold confusion matrix"))
        if run.errors.is_file():
            images.append((str(run.errors), "the worst out-of-fold mistakes (errors.png)"))
        else:
            parts.append("\nno errors.png yet: `python -m tools.report` draws the worst mistakes")
        return "\n".join(parts), images


def unplaced(value):
    """A setting as the page shows it: an absolute path cut to its last part (.../name), in lists and mappings too; the
    page tells nobody where the server keeps its data and runs."""
    if isinstance(value, dict):
        return {k: unplaced(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unplaced(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return f".../{Path(value).name}"
    return value


def build(page: Page):
    """The Gradio Blocks of the page."""
    import gradio as gr

    with gr.Blocks(title="maskcls") as blocks:
        gr.Markdown(f"# maskcls: {html.escape(', '.join(p.name for p in page.plans))}\n"
                    + "\n".join(f"- {html.escape(n)}" for n in page.notes))
        with gr.Tab("Try photos"):
            with gr.Row():
                files = gr.File(file_count="multiple", label="photos", file_types=["image", *IMAGE_EXTS])
                camera = gr.Image(sources=["webcam"], type="filepath", label="or the webcam")
            button = gr.Button("Predict", variant="primary")
            decisions = gr.Markdown(elem_id="decisions")
            gallery = gr.Gallery(label="the input the model saw, its mask, gender and age maps, and the bars",
                                 columns=1, height=560, object_fit="contain")

            def predict(dropped, shot):
                return page.predict([*(dropped or []), *([shot] if shot else [])])

            button.click(predict, [files, camera], [decisions, gallery], api_name="predict")
        with gr.Tab("The run"):
            overview, images = page.run_overview()
            gr.Markdown(overview)
            gr.Gallery(value=images, columns=1, height=720, object_fit="contain", label="out of fold")
    return blocks


AUTH_VARIABLE = "MASKCLS_AUTH"  # user:password from the environment: out of the process list and of shell history


def credentials(cfg: AppConfig) -> tuple[str, str] | None:
    """The login the page asks for, from --auth, --auth_file (its first line) or $MASKCLS_AUTH (the options win), or
    None."""
    if cfg.auth and cfg.auth_file:
        raise ConfigError("--auth and --auth_file both give a login; give one")
    if cfg.auth_file:
        why = irregular(cfg.auth_file)
        try:
            if why:
                raise ValueError(why)
            text, source = (read_document(cfg.auth_file).splitlines() or [""])[0].strip(), f"--auth_file {cfg.auth_file}"
        except (OSError, ValueError) as e:
            raise ConfigError(f"--auth_file {cfg.auth_file}: {first_line(e)}") from None
    else:
        text, source = (cfg.auth, "--auth") if cfg.auth else (os.environ.get(AUTH_VARIABLE, ""), AUTH_VARIABLE)
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{source} takes user:password")
    return user, password


def access(cfg: AppConfig) -> tuple[tuple[str, str] | None, str | None]:
    """(Gradio's auth pair or None, a warning or None) of the login (credentials) and --host."""
    auth = credentials(cfg)
    if not cfg.host.strip():
        raise ConfigError("--host is empty; give 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every machine "
                          "that reaches this one)")
    if cfg.host in ("127.0.0.1", "localhost", "::1"):
        return auth, None
    return auth, (f"warning: --host {cfg.host}: the page answers every machine that reaches this one on port "
                  f"{cfg.port}" + ("" if auth else f"; give --auth_file FILE (its first line user:password) or "
                                                   f"{AUTH_VARIABLE}=user:password"))


def serve(cfg: AppConfig):
    """Check every run (one line for a missing one, before any server starts), open them, and serve the page."""
    from src.predict.plans import reading_runs
    from src.run.logging import setup_logging

    setup_logging()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: servers often have no internet
    auth, warning = access(cfg)
    if warning:
        log.warning("%s", warning)
    with reading_runs(cfg) as plans:
        page = Page(cfg, plans)
        blocks = build(page)
        log.info("page: http://%s:%d", cfg.host, cfg.port)
        blocks.queue(default_concurrency_limit=1).launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share,
                                                          auth=auth, quiet=True, show_error=True)

