"""What runs the network of one run at prediction time: PyTorch, or onnxruntime on the run's graph exported once
into the run folder (onnx/) and reused until its checkpoints, its settings or the graph's code change. Both map a
uint8 batch to the 18-class probabilities averaged over folds and TTA views."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.config.schema import Engine, Loading, Precision, Prediction, TrainConfig
from src.engine import builders
from src.engine.forward import forward_views, predictions
from src.errors import FileSystemError, NonFinite, NoSpace, ParityError
from src.files import file_digest
from src.predict import onnx_graph
from src.predict.plans import RunPlan
from src.predictions import Predictions
from src.run.atomic import replace_together, text_writer, write_bytes
from src.run.checkpoint import load_into, load_weights
from src.run.rundir import RunDir

log = logging.getLogger("maskcls")

PARITY_TOLERANCE = 1e-4  # largest probability difference allowed between an exported graph and PyTorch


def resolve(engine: str, device: torch.device) -> str:
    """auto: onnxruntime on CPU (faster there), torch on CUDA."""
    if engine == "auto":
        return "torch" if device.type == "cuda" else "onnxruntime"
    return engine


def load_models(run_cfg: TrainConfig, checkpoints, device) -> list[torch.nn.Module]:
    models = []
    for path in checkpoints:
        model = builders.model(run_cfg, pretrained=False)  # the checkpoint holds every weight
        load_into(model, load_weights(path), path, f"model {run_cfg.model}, heads {run_cfg.heads}")
        models.append(model.to(device).eval())  # the model keeps its own memory format (channels_last for conv nets)
    return models


class TorchEngine:
    """The fold models of a run in PyTorch, with TTA; non-finite outputs name the fold that made them."""
    name = "torch"

    def __init__(self, run_name: str, models, folds: list[int], checkpoint: str, device, tta: str, amp: str):
        self.run_name, self.models, self.folds, self.checkpoint = run_name, models, folds, checkpoint
        self.device, self.tta, self.amp = device, tta, amp

    def __call__(self, x: torch.Tensor) -> Predictions:
        """The Predictions of a uint8 batch."""
        out = forward_views(self.models, x, self.device, self.tta, self.amp).map(torch.Tensor.cpu)
        finite = torch.stack([torch.isfinite(t).reshape(len(self.models), -1).all(1) for t in out if t is not None])
        finite = finite.all(0)
        if not finite.all():
            folds = ", ".join(str(self.folds[i]) for i in (~finite).nonzero().flatten().tolist())
            raise NonFinite(f"run {self.run_name} fold {folds}: non-finite probabilities from {self.checkpoint}.pt; "
                            f"nothing was written. Retrain that fold or choose another --checkpoint")
        return predictions(out)


class OnnxEngine:
    """An onnxruntime session on an exported graph (folds and TTA inside)."""
    name = "onnxruntime"

    def __init__(self, run_name: str, sess, checkpoint: str):
        self.run_name, self.sess, self.checkpoint = run_name, sess, checkpoint

    def __call__(self, x: torch.Tensor) -> Predictions:
        got = onnx_graph.run_session(self.sess, x)
        if not got.finite().all():
            raise NonFinite(f"run {self.run_name}: non-finite probabilities from {self.checkpoint}.pt (onnxruntime); "
                            f"nothing was written. --engine torch names the fold; retrain it or choose another "
                            f"--checkpoint")
        return got


def export_key(run: RunDir, checkpoints: list[Path], tta: str) -> str:
    """What an exported graph depends on: the run's settings, each fold's checkpoint bytes, TTA and the code."""
    h = hashlib.sha256(onnx_graph.graph_code_digest().encode())
    for path in (run.config, *checkpoints):
        h.update(f"{path.name}:{file_digest(path)};".encode())
    h.update(tta.encode())
    return h.hexdigest()[:16]


def noise_images(size: tuple[int, int]) -> torch.Tensor:
    """3 seeded noise images: a batch size unlike the export's example, so the dynamic batch axis is checked too."""
    return torch.randint(0, 256, (3, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def check_parity(graph, sess, what: str, tolerance: float, images: torch.Tensor, remedy: str) -> float:
    """onnxruntime against PyTorch on `images` (onnx_graph.parity); above `tolerance` it is an error naming the figure
    and `remedy`, what the command at hand can do instead."""
    diff = onnx_graph.parity(graph, sess, images)
    if not diff <= tolerance:
        raise ParityError(f"{what}: onnxruntime's outputs differ from PyTorch's by up to {diff:.3g} on "
                          f"{len(images)} images, more than {tolerance:g}; nothing was written. {remedy}")
    return diff


def cached_graph(run_name: str, path: Path, digest_file: Path):
    """A session on a cached export whose bytes still have the digest recorded beside them; None (with a warning)
    for one changed, damaged or without its digest, which is then exported again."""
    try:
        sess = onnx_graph.session(str(path))
    except Exception as e:  # onnxruntime raises its own types for a damaged file
        log.warning("run %s: the cached export %s is unreadable (%s); exporting again", run_name, path,
                    str(e).strip().splitlines()[0][:200])
        return None
    try:
        recorded = digest_file.read_text().strip()
    except OSError:
        recorded = ""
    if file_digest(path) != recorded:  # a valid graph, but not the one exported here
        log.warning("run %s: the cached export %s does not match the digest recorded in %s; exporting again",
                    run_name, path, digest_file.name)
        return None
    log.info("run %s: onnxruntime on %s", run_name, path)
    return sess


def cached_session(run: RunDir, run_cfg: TrainConfig, checkpoints: list[Path], folds: list[int], checkpoint: str,
                   tta: str):
    """A session on the run's exported graph: onnx/<checkpoint>.<tta>.<key>.onnx, exported (and checked against
    PyTorch) when missing. A stale export of the same checkpoint kind and TTA is deleted. On a read-only run
    folder the graph lives in memory for this process only; a damaged cached file is exported again."""
    key = export_key(run, checkpoints, tta)
    path = run.onnx_export(checkpoint, tta, key)
    if path.is_file():
        sess = cached_graph(run.name, path, run.onnx_digest(path))
        if sess is not None:
            return sess
    size = builders.input_size(run_cfg)
    cpu = torch.device("cpu")
    models = load_models(run_cfg, checkpoints, cpu)
    noise = noise_images(size)
    TorchEngine(run.name, models, folds, checkpoint, cpu, tta, "none")(noise)  # a NaN fold is named, not exported
    graph = onnx_graph.ProbabilityGraph([models], tta)
    model = onnx_graph.onnx_bytes(graph, size)
    sess = onnx_graph.session(model)
    diff = check_parity(graph, sess, f"run {run.name}: the exported graph", PARITY_TOLERANCE, noise,
                        "Use --engine torch")
    try:
        replace_together({path: lambda tmp: write_bytes(model, tmp),
                          run.onnx_digest(path): text_writer(hashlib.sha256(model).hexdigest() + "\n")})
    except (FileSystemError, NoSpace) as e:
        log.warning("run %s: the exported graph is not cached (%s); it is used from memory", run.name, e)
    else:
        for stale in run.onnx_exports(checkpoint, tta):
            if stale != path:
                stale.unlink(missing_ok=True)
                run.onnx_digest(stale).unlink(missing_ok=True)
        log.info("run %s: exported %d fold(s) (tta=%s) to %s; parity with PyTorch %.1e", run.name, len(checkpoints),
                 tta, path, diff)
    return sess


def open_engine(engine: str, run_name: str, run: RunDir, run_cfg: TrainConfig, checkpoints: list[Path],
                folds: list[int], checkpoint: str, tta: str, amp: str, device: torch.device):
    """The engine that --engine names for one run (auto resolved for `device`)."""
    if resolve(engine, device) == "onnxruntime":
        return OnnxEngine(run_name, cached_session(run, run_cfg, checkpoints, folds, checkpoint, tta), checkpoint)
    return TorchEngine(run_name, load_models(run_cfg, checkpoints, device), folds, checkpoint, device, tta,
                       amp if device.type == "cuda" else "none")


def run_engine(plan: RunPlan, cfg: Engine | Prediction | Precision, device: torch.device):
    """The engine of one planned run (its checkpoints read, its graph exported or its cache checked), logged."""
    engine = open_engine(cfg.engine, plan.name, plan.run, plan.cfg, plan.checkpoints, plan.folds, plan.checkpoint,
                         cfg.tta, cfg.amp, device)
    log.info("run %s: %s; %dx%d, tta=%s, engine %s", plan.name, plan.used(), plan.cfg.img_height, plan.cfg.img_width,
             cfg.tta, engine.name)
    return engine


def predict_run(engine, dataset, cfg: Loading, device: torch.device, desc: str | None = None) -> tuple:
    """predict_batches of one run's engine over `dataset`, at the batch size cfg names."""
    return predict_batches(engine, builders.loader(dataset, cfg, device, cfg.infer_batch_size), desc)


def predict_batches(engine, loader, desc: str | None = None) -> tuple[np.ndarray, np.ndarray, Predictions]:
    """(labels, dataset indices, Predictions) over a loader of (image, label, index) batches, in its order."""
    labels, indices, parts = [], [], []
    for x, label, index in tqdm(loader, desc=desc, disable=desc is None, mininterval=1, leave=False):
        parts.append(engine(x))
        labels.append(np.asarray(label))
        indices.append(np.asarray(index))
    return np.concatenate(labels), np.concatenate(indices), Predictions.concat(parts)
