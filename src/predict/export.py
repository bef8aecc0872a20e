"""export.py: finished runs as one ONNX graph (model.onnx) and the description a consumer needs to feed it
(model.json), written together only after onnxruntime matched PyTorch on real images of the run's data."""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from pathlib import Path

import torch
import yaml

from src.config.policy import git_commit
from src.config.schema import ExportConfig
from src.data import crops
from src.data.dataset import FaceDataset
from src.data.tables import load_eval
from src.engine import builders
from src.errors import ConfigError, DataError
from src.files import file_digest, read_yaml, real, shown
from src.labels import CLASS_NAMES, TASK_NAMES
from src.predict import onnx_graph
from src.predict.offsets import choose_offsets, describe
from src.predict.engines import check_parity, load_models
from src.predict.plans import RunPlan, reading_runs
from src.run import tracking
from src.run.atomic import check_writable, replace_together, text_writer, write_bytes
from src.run.logging import setup_logging

log = logging.getLogger("maskcls")

MODEL, CARD = "model.onnx", "model.json"


def common_sizes(plans: list[RunPlan]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(input size, decode size) shared by every run: one graph takes one input."""
    sizes = {(builders.input_size(p.cfg), builders.work_size(p.cfg)) for p in plans}
    if len(sizes) > 1:
        shown_sizes = ", ".join(f"{p.name} {p.cfg.img_height}x{p.cfg.img_width} (decoded at "
                                f"{'x'.join(map(str, builders.work_size(p.cfg)))})" for p in plans)
        raise ConfigError(f"--runs differ in input size ({shown_sizes}); one graph takes one input: export them "
                          f"separately")
    return sizes.pop()


def common_crop(plans: list[RunPlan]) -> dict:
    """The crop every run takes (model.json's preprocess.crop); runs that crop differently are refused."""
    records = {crop_record(p.cfg) for p in plans}
    if len(records) > 1:
        shown_crops = ", ".join(f"{p.name} crop {p.cfg.crop}" + (f" box {' '.join(f'{c:g}' for c in p.cfg.crop_box)}"
                                                                  if p.cfg.crop != "none" else "") for p in plans)
        raise ConfigError(f"--runs crop differently ({shown_crops}); one graph takes one input: export them "
                          f"separately")
    return dict(records.pop())


def crop_record(run_cfg) -> tuple:
    note = "box = (left, top, right, bottom) as fractions of the decoded frame, cut before the resize"
    if run_cfg.crop == "none":
        return ("kind", "none"), ("box", (0.0, 0.0, 1.0, 1.0)), ("note", note)
    if run_cfg.crop == "center":
        return ("kind", "center"), ("box", tuple(run_cfg.crop_box)), ("note", note)
    return (("kind", "face"), ("detector", crops.DETECTOR), ("detect_side", crops.DETECT_SIDE),
            ("min_face", crops.MIN_FACE), ("min_prob", crops.MIN_PROB), ("margin", run_cfg.face_margin),
            ("aspect", run_cfg.img_width / run_cfg.img_height), ("fallback_box", tuple(run_cfg.crop_box)),
            ("note", "the largest face found in the frame shrunk to detect_side, each side grown by margin of the "
                     "box's size, widened to width/height = aspect, shrunk to fit and shifted inside the frame; "
                     "fallback_box (fractions of the frame) where no face reaches min_prob"))


def parity_batch(data_dir, n: int, run_cfg, log_dir, max_pixels: int) -> torch.Tensor:
    """The first n eval images of data_dir, decoded, cropped and resized exactly as infer does for run_cfg."""
    try:
        paths = load_eval(data_dir)["path"][:n]
    except DataError as e:
        raise ConfigError(f"export checks parity on eval images of --data_dir {shown(data_dir)}, which it cannot "
                          f"read ({e.problems[0]}); give --data_dir of the run's data") from None
    ds = FaceDataset(builders.file_images(run_cfg, paths, log_dir, max_pixels), None,
                     builders.eval_transform(run_cfg))
    return torch.stack([ds[i][0] for i in range(len(ds))])


def run_record(plan: RunPlan) -> dict:
    try:
        trained = read_yaml(plan.run.config).get("git_commit", "unknown")
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        trained = "unknown"
    return dict(name=plan.name, model=plan.cfg.model, heads=plan.cfg.heads, folds=plan.folds, trained_at=trained,
                checkpoint=plan.checkpoint,
                checkpoints=[dict(path=str(p), sha256=file_digest(p)) for p in plan.checkpoints],
                mean=plan.cfg.mean, std=plan.cfg.std)


def decision_record(cfg: ExportConfig, plans: list[RunPlan]) -> dict:
    offsets, cuts, how = choose_offsets(cfg.decision, plans)
    rule = "class = argmax(log(probs) + offsets); a plain argmax when offsets is null"
    if cuts is not None:
        rule += ("; with age_cuts [c1, c2]: the age band is (years >= c1) + (years >= c2) of the output 'years', and the "
                 "argmax runs over the six classes of that band (class % 3 == band)")
    return describe(offsets, how, cuts) | dict(apply=rule)


def model_card(cfg: ExportConfig, plans: list[RunPlan], size, work, crop: dict, decided: dict, diff: float,
               n: int) -> dict:
    """Everything a consumer needs to reproduce the preprocessing and read the outputs."""
    commit, dirty = git_commit()
    return {
        "format": "maskcls onnx 1",
        "input": dict(name=onnx_graph.INPUT, dtype="uint8", layout="NCHW", channels="RGB", height=size[0],
                      width=size[1], batch="dynamic", normalisation="inside the graph"),
        "preprocess": dict(
            decode="RGB, EXIF orientation applied, grayscale repeated to 3 channels, alpha dropped",
            crop=crop,
            resize=[dict(height=work[0], width=work[1], interpolation="area"),
                    dict(height=size[0], width=size[1], interpolation="bilinear")]),
        "outputs": {name: (CLASS_NAMES if name == "probs" else list(TASK_NAMES[name]))
                    for name in onnx_graph.OUTPUTS},
        "classes": CLASS_NAMES,
        "class_encoding": "class = 6 * mask + 3 * gender + age",
        "decision": decided,
        "ensemble": dict(tta=cfg.tta,
                         rule="mean over runs of each run's mean softmax over its folds and TTA views"),
        "runs": [run_record(p) for p in plans],
        "parity": dict(max_abs_diff=diff, images=n, tolerance=cfg.parity_tolerance, data_dir=str(cfg.data_dir)),
        "opset": onnx_graph.OPSET,
        "torch": torch.__version__,
        "git_commit": commit, "git_dirty": dirty,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def export(cfg: ExportConfig) -> Path:
    setup_logging()
    trackers = tracking.check(cfg)  # a tracker that cannot be reached or written, before the parity check's minutes
    if not cfg.out:
        raise ConfigError("--out names the folder that receives model.onnx and model.json")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {shown(cfg.out)} is a file; give a folder")
    with reading_runs(cfg) as plans:
        data_dir = cfg.data_dir or plans[0].cfg.data_dir
        if real(out).is_relative_to(real(data_dir)):
            raise ConfigError(f"--out {shown(cfg.out)} lies inside data_dir {data_dir}; exports never go into the "
                              f"data")
        check_writable(out)  # before the parity check's minutes
        model = export_runs(dataclasses.replace(cfg, data_dir=data_dir), out, plans)
        # tracked runs (and --tracker) get model.onnx and model.json as artifacts
        tracking.add_outputs(trackers, [plan.run for plan in plans], "export", dict(model=model, card=out / CARD))
        return model


def export_runs(cfg: ExportConfig, out: Path, plans: list[RunPlan]) -> Path:
    size, work = common_sizes(plans)
    crop = common_crop(plans)
    decided = decision_record(cfg, plans)  # decision.json and the parity photos before any model loads
    images = parity_batch(cfg.data_dir, cfg.parity_images, plans[0].cfg, cfg.log_dir, cfg.max_image_pixels)
    cpu = torch.device("cpu")
    graph = onnx_graph.ProbabilityGraph([load_models(p.cfg, p.checkpoints, cpu) for p in plans], cfg.tta)
    for plan in plans:
        log.info("run %s: %s", plan.name, plan.used())
    model = onnx_graph.onnx_bytes(graph, size)
    diff = check_parity(graph, onnx_graph.session(model), f"export of {', '.join(p.name for p in plans)}",
                        cfg.parity_tolerance, images, f"Export with another --checkpoint, or allow more with "
                                                      f"--parity_tolerance (now {cfg.parity_tolerance:g})")
    log.info("parity with PyTorch on %d eval images of %s: largest probability difference %.2e (tolerance %g)",
             len(images), cfg.data_dir, diff, cfg.parity_tolerance)
    card = model_card(cfg, plans, size, work, crop, decided, diff, len(images))
    replace_together({out / MODEL: lambda tmp: write_bytes(model, tmp),
                      out / CARD: text_writer(json.dumps(card, indent=2) + "\n")})
    log.info("wrote %s (%.1f MB) and %s", out / MODEL, len(model) / 1e6, out / CARD)
    return out / MODEL
