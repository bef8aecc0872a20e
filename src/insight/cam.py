"""Where a model looks: Grad-CAM maps (the pytorch-grad-cam package) of each task on the layer the model package
names (src/model/backbones.py's map_layer: the backbone's last feature map, or a class-token model's last block's
input), for any timm family the project builds, and the share of a map's mass inside the face box.

The map of a task is Grad-CAM of the log-odds of the task value a photo was decided as (its mask state, gender or
age band, against the task's other values, from the 18-class logits), so the three heads are explained alike, joint
or per task; log-odds, unlike a log-probability, keep their gradient for a sure prediction. Each map is one forward
and backward pass: three per fold model and photo batch. NHWC maps (Swin) are turned to NCHW first; a token model's
patches are laid back on their grid. Maps are scaled to the model's input, each in [0, 1].

The face box is the data's crop box (the `crop_box` setting: face, hair and neck of a competition photo) in the
coordinates of the input the model saw: for a run that crops to that very box it is the whole input.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from src.errors import ConfigError
from src.labels import TASK_NAMES, TASK_SIZES, decode_label
from src.model.backbones import token_layout

TASKS = tuple(TASK_NAMES)  # mask, gender, age: the order of every map triple
TMP_ROOM = 24  # bytes of a file name kept for the atomic write's temp name (.<name>.<pid>.tmp)
CHUNK = 16  # photos explained at once


class TaskTarget:
    """A Grad-CAM target: the log-odds of one task's `value` in one photo's 18-class logits: logsumexp of the
    logits of its classes minus that of the other classes."""

    def __init__(self, task: int, value: int):
        self.task, self.value = task, int(value)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float().reshape(*TASK_SIZES)
        others = tuple(d for d in range(3) if d != self.task)
        per_value = logits.logsumexp(others)
        rest = torch.cat([per_value[:self.value], per_value[self.value + 1:]])
        return per_value[self.value] - rest.logsumexp(0)


def reshape_for(model):
    """The reshape_transform of a model's feature layout (None for NCHW maps)."""
    if model.layout == "NHWC":
        return lambda t: t.permute(0, 3, 1, 2)
    if model.layout != "pooled":
        return None
    prefix, grid = token_layout(model.backbone)

    def tokens_to_map(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 4:
            return t
        patches = t[:, prefix:] if t.dim() == 3 else t
        h, w = grid if grid is not None else (int(math.sqrt(patches.shape[1])),) * 2
        return patches[:, : h * w].reshape(t.shape[0], h, w, -1).permute(0, 3, 1, 2)

    return tokens_to_map


class Explainer:
    """Grad-CAM of one model (eval mode, on its device) for the three tasks."""

    def __init__(self, model):
        self.model = model.eval()

    def maps(self, images: torch.Tensor, classes) -> np.ndarray:
        """(N, 3, H, W) maps in [0, 1], one per task, of uint8 images (N, 3, H, W) decided as `classes`."""
        from pytorch_grad_cam import GradCAM

        values = decode_label(np.asarray(classes, dtype=np.int64))
        device = next(self.model.parameters()).device
        with GradCAM(model=self.model, target_layers=[self.model.explained_layer],
                     reshape_transform=reshape_for(self.model)) as cam:
            out = [cam(input_tensor=images.to(device), targets=[TaskTarget(t, v) for v in values[t]])
                   for t in range(len(TASKS))]
        return np.stack(out, 1).astype(np.float32)


def explain(explainer_of, inputs: torch.Tensor, classes, parts) -> np.ndarray:
    """The one maps loop: (N, 3, H, W) maps of the uint8 `inputs` decided as `classes`, CHUNK photos at a time, each
    part of rows (`parts`: (key, row indices)) by `explainer_of(key)`'s maps (an Explainer, or a run's mean of
    them)."""
    maps = np.zeros((len(inputs), len(TASKS), *inputs.shape[2:]), np.float32)
    classes = np.asarray(classes)
    for key, rows in parts:
        for start in range(0, len(rows), CHUNK):
            part = rows[start:start + CHUNK]
            maps[part] = explainer_of(key).maps(inputs[part], classes[part])
    return maps


def face_box(crop_box, photo_box=None) -> tuple[float, float, float, float]:
    """The data's crop box (fractions of the frame) in fractions of the input cut to `photo_box` (None: the whole
    frame), clipped to the input."""
    bx0, by0, bx1, by1 = photo_box if photo_box is not None else (0.0, 0.0, 1.0, 1.0)
    fx0, fy0, fx1, fy1 = crop_box
    sx, sy = bx1 - bx0, by1 - by0
    box = ((fx0 - bx0) / sx, (fy0 - by0) / sy, (fx1 - bx0) / sx, (fy1 - by0) / sy)
    return tuple(float(min(max(v, 0.0), 1.0)) for v in box)


def mass_inside(cam: np.ndarray, box) -> float:
    """The share of a map's mass inside `box` (fractions of the map: x0 y0 x1 y1); NaN for an empty map."""
    h, w = cam.shape
    x0, y0, x1, y1 = round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)
    total = float(cam.sum())
    return float(cam[y0:y1, x0:x1].sum()) / total if total > 0 else float("nan")


def overlay(image: np.ndarray, cam: np.ndarray, weight: float = 0.45) -> np.ndarray:
    """The photo (H, W, 3 uint8) with the map laid over it as a heat map."""
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.uint8((1 - weight) * image + weight * heat)


def strip(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """One picture: the input the model saw, then each task's map over it, side by side."""
    return np.concatenate([image, *(overlay(image, m) for m in maps)], 1)


def inputs_of(plan, paths, log_dir, max_pixels: int) -> tuple[torch.Tensor, list | None]:
    """(the uint8 inputs (N, 3, H, W) a planned run's models see for these photos, cropped and resized as its
    prediction does; each photo's crop box in fractions of its frame, or None for the whole frame)."""
    from src.engine import builders

    images = builders.file_images(plan.cfg, paths, log_dir, max_pixels)
    transform = builders.eval_transform(plan.cfg)
    return torch.stack([transform(images[i]) for i in range(len(paths))]), images.boxes


class RunExplainer:
    """A planned run's fold models explaining photos: the mean of the folds' maps, over the input they saw."""

    def __init__(self, plan, device, log_dir, max_pixels: int):
        from src.predict.engines import load_models

        self.plan, self.log_dir, self.max_pixels = plan, log_dir, max_pixels
        self.explainers = [Explainer(m) for m in load_models(plan.cfg, plan.checkpoints, device)]

    def maps(self, x: torch.Tensor, classes) -> np.ndarray:
        return np.mean([e.maps(x, classes) for e in self.explainers], axis=0)

    def pictures(self, paths, classes) -> list[np.ndarray]:
        """For each photo, the input the models saw, then its mask, gender and age maps (strip), for `classes`."""
        x, _ = inputs_of(self.plan, paths, self.log_dir, self.max_pixels)
        maps = explain(lambda _: self, x, classes, [(None, np.arange(len(x)))])
        return [strip(image, triple) for image, triple in zip(x.permute(0, 2, 3, 1).numpy(), maps)]


class PhotoMaps:
    """predict.py --cam: for each predicted photo, `folder`/<row>_<name>.png: the input the first run's models saw,
    then its mask, gender and age maps (the mean of its folds'), for the class the photo was decided as. Where each
    picture goes is settled and checked before any photo is predicted; a name too long for the file system is cut
    and told apart by a digest of the whole."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def files(self, photos: list[str]) -> list[Path]:
        from src.run.rundir import name_max

        room = name_max(self.folder) - TMP_ROOM
        names = []
        for i, photo in enumerate(photos):
            stem = Path(photo).stem
            name = f"{i:04d}_{stem}.png"
            if len(name.encode()) > room:
                digest = hashlib.sha256(stem.encode(errors="replace")).hexdigest()[:8]
                keep = room - len(f"{i:04d}_-{digest}.png".encode())
                name = f"{i:04d}_{stem.encode()[:keep].decode(errors='ignore')}-{digest}.png"
            names.append(self.folder / name)
        return names

    def check(self, photos: list[str]):
        """The folder can be written and no picture's place is taken by anything but a file: one line if not."""
        from src.run.atomic import check_writable

        check_writable(self.folder)
        taken = next((p for p in self.files(photos) if p.exists() and not p.is_file()), None)
        if taken is not None:
            raise ConfigError(f"--cam {self.folder}: {taken.name} is a folder (or not a file) where a picture goes; "
                              f"move it away or give another --cam folder")

    def write(self, predictor, rows):
        from src.run.figures import save_rgb

        ok = rows.index[rows["error"] == ""]
        if not len(ok):
            return
        files = self.files(rows["path"].tolist())
        plan = predictor.plans[0]
        explainer = RunExplainer(plan, predictor.device, predictor.cfg.log_dir, predictor.cfg.max_image_pixels)
        for start in range(0, len(ok), CHUNK):  # a chunk's inputs and maps in memory at a time
            chunk = ok[start:start + CHUNK]
            pictures = explainer.pictures(rows.loc[chunk, "path"].tolist(), rows.loc[chunk, "class"].astype(int))
            for i, picture in zip(chunk, pictures):
                save_rgb(picture, files[i])


class FoldExplainers:
    """A planned run's fold models, each explaining the photos of its own fold (its out-of-fold photos), loaded as
    they are needed."""

    def __init__(self, plan, log_dir, max_pixels: int, device=None):
        self.plan, self.log_dir, self.max_pixels = plan, log_dir, max_pixels
        self.device = device or torch.device("cpu")
        self.loaded: dict[int, Explainer] = {}

    def fold(self, k: int) -> Explainer:
        from src.predict.engines import load_models

        if k not in self.loaded:
            path = self.plan.checkpoints[self.plan.folds.index(k)]
            self.loaded[k] = Explainer(load_models(self.plan.cfg, [path], self.device)[0])
        return self.loaded[k]

    def explain(self, paths: list[str], folds, classes) -> tuple[np.ndarray, np.ndarray, list]:
        """(inputs (N, H, W, 3) uint8, maps (N, 3, H, W), each photo's face box in fractions of its input) of photos
        of finished folds, each by its fold's model, for the classes they were decided as."""
        x, boxes = inputs_of(self.plan, paths, self.log_dir, self.max_pixels)
        folds = np.asarray(folds)
        maps = explain(self.fold, x, classes, [(int(k), np.flatnonzero(folds == k)) for k in np.unique(folds)])
        faces = [face_box(self.plan.cfg.crop_box, None if boxes is None else boxes[i]) for i in range(len(paths))]
        return x.permute(0, 2, 3, 1).numpy(), maps, faces


def face_share(explainers: FoldExplainers, oof, n_photos: int, seed: int = 0) -> dict:
    """The mean share of each task's map inside the face box, over a seeded sample of `n_photos` out-of-fold photos
    of the run's finished folds (each explained by its own fold's model, for the class it was decided as)."""
    rows = oof[oof["fold"].isin(explainers.plan.folds)]
    rows = rows.sample(min(n_photos, len(rows)), random_state=seed) if len(rows) > n_photos else rows
    _, maps, faces = explainers.explain(rows["path"].tolist(), rows["fold"].to_numpy(), rows["pred"].to_numpy())
    shares = np.array([[mass_inside(m, box) for m in triple] for triple, box in zip(maps, faces)])
    return dict(photos=len(rows), **{task: float(np.nanmean(shares[:, t])) for t, task in enumerate(TASKS)})
