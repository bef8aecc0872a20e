"""The prediction as one ONNX graph: uint8 images in, the 18-class and per-task probabilities out, with the fold
ensemble, flip TTA and every run of an ensemble inside; onnxruntime sessions on it, and the parity check against
PyTorch that every export passes before it is used or written."""
from __future__ import annotations

import hashlib
import inspect
import io
import warnings

import numpy as np
import torch
import torch.nn as nn

from src.engine import forward
from src.labels import task_probabilities
from src.model import network
from src.predictions import YEARS, Predictions

INPUT = "image"  # uint8 (N, 3, H, W) RGB at the run's input size, after crop and resize
OUTPUTS = ("probs", "mask", "gender", "age")  # (N, 18) class probabilities, then (N, 3), (N, 2), (N, 3) per task;
# then YEARS (N,), the age in years, where every run's age head learns the exact age
OPSET = 17


class ProbabilityGraph(nn.Module):
    """The mean over runs of each run's fold x TTA softmax average (what infer computes), then the task marginals,
    and where every run has a number age head the mean of their ages in years. `runs` holds each run's fold
    models."""

    def __init__(self, runs: list[list[nn.Module]], tta: str):
        super().__init__()
        self.runs = nn.ModuleList(nn.ModuleList(models) for models in runs)
        self.tta = tta
        self.years = all(m.tells_years for models in runs for m in models)
        self.output_names = OUTPUTS + ((YEARS,) if self.years else ())

    def forward(self, x):
        means = [forward.mean_prediction(forward.forward_views(models, x, x.device, self.tta, "none"))
                 for models in self.runs]
        probs = torch.stack([p for p, _ in means]).mean(0)  # fp32: the graph runs on onnxruntime
        if not self.years:
            return (probs, *task_probabilities(probs))
        return (probs, *task_probabilities(probs), torch.stack([y for _, y in means]).mean(0))


def graph_code_digest() -> str:
    """The code an exported graph is traced from: a change to it makes every cached export stale."""
    source = "".join(inspect.getsource(m) for m in (network, forward)) + inspect.getsource(ProbabilityGraph)
    return hashlib.sha256(f"{torch.__version__}|{OPSET}|{source}".encode()).hexdigest()


def onnx_bytes(graph: ProbabilityGraph, size: tuple[int, int]) -> bytes:
    """The traced graph with a dynamic batch axis, serialised. The TorchScript exporter: it traces this
    model family exactly and 8x faster than the dynamo one (2.6 s against 22 s for lite0)."""
    graph.eval()
    buf = io.BytesIO()
    example = torch.zeros((2, 3, *size), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notice and tracer notes on eval-only branches
        torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=list(graph.output_names),
                          dynamic_axes={n: {0: "batch"} for n in (INPUT, *graph.output_names)})
    return buf.getvalue()


def session(model, threads: int = 0):
    """An onnxruntime CPU session on model bytes or a file; threads 0 = torch's thread count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_session(sess, x: torch.Tensor | np.ndarray) -> Predictions:
    """The Predictions of a uint8 batch."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    names = [OUTPUTS[0]] + [YEARS for o in sess.get_outputs() if o.name == YEARS]
    return Predictions(*sess.run(names, {INPUT: np.ascontiguousarray(x)}))


@torch.no_grad()
def parity(graph: ProbabilityGraph, sess, x: torch.Tensor) -> float:
    """The largest difference of any output between PyTorch and onnxruntime on the batch x, relative to the output's
    size where that is over 1 (NaN counts as infinitely far). A probability is compared as it is; the age in years
    (up to 60) relative to itself: float32 keeps about 7 digits of any number, so its 42 summed boundary probabilities
    differ by 1e-6 of the age (seen: 1.1e-4 years), while an age 1e-4 of itself off (0.006 years) changes no decision
    that the cut points' grid (0.25 years) does not already leave to chance."""
    graph.eval()
    ours = [t.numpy() for t in graph(x)]
    theirs = sess.run(list(graph.output_names), {INPUT: x.numpy()})
    return max(float(np.nan_to_num(np.abs(a - b) / np.maximum(np.abs(a), 1.0), nan=np.inf).max())
               for a, b in zip(ours, theirs))
