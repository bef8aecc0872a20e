"""src/engine/forward.py: autocast, the average over folds and flip TTA."""
import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from src.data.dataset import FaceDataset
from src.data.loaders import make_loader
from src.engine.builders import eval_transform
from src.engine.forward import autocast, probabilities
from src.engine.forward import predict_loader as forward_predict
from tests.helpers import tiny_cfg


def test_amp_is_autocast_on_cuda_only():
    assert isinstance(autocast("bf16", torch.device("cpu")), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = autocast("fp16", torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    assert isinstance(autocast("none", torch.device("cuda")), contextlib.nullcontext)


def average_probs(models, loader, cfg, tta):
    return probabilities(forward_predict(models, loader, torch.device("cpu"), tta, "none")[1]).numpy()


class Constant(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def image_loader(images, cfg):
    ds = FaceDataset(images, None, eval_transform(cfg))
    return make_loader(ds, torch.device("cpu"), 2, 0)


def test_fold_average_is_the_mean_of_softmaxes():
    cfg = tiny_cfg(channels_last="false")
    a, b = np.random.default_rng(0).normal(size=(2, 18)) * 3
    images = [np.zeros((64, 48, 3), np.uint8)] * 3
    got = average_probs([Constant(a), Constant(b)], image_loader(images, cfg), cfg, "none")
    want = (F.softmax(torch.tensor(a), 0) + F.softmax(torch.tensor(b), 0)) / 2
    assert np.allclose(got, want.numpy()[None].repeat(3, 0), atol=1e-6)


def test_flip_tta_feeds_the_flipped_image():
    class LeftRight(torch.nn.Module):
        def forward(self, x):
            self.seen = x
            x = x.float()
            out = torch.zeros(x.shape[0], 18)
            out[:, 0] = x[..., : x.shape[-1] // 2].mean((1, 2, 3)) / 50
            out[:, 1] = x[..., x.shape[-1] // 2:].mean((1, 2, 3)) / 50
            return out

    cfg = tiny_cfg(channels_last="false")
    img = np.zeros((64, 48, 3), np.uint8)
    img[:, :24] = 200  # bright left half
    model = LeftRight()
    got = average_probs([model], image_loader([img], cfg), cfg, "flip")
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    assert torch.equal(model.seen[1:], x.flip(3))
    want = (F.softmax(LeftRight()(x), 1) + F.softmax(LeftRight()(x.flip(3)), 1)) / 2
    assert np.allclose(got, want.numpy(), atol=1e-6)
    assert abs(got[0, 0] - got[0, 1]) < 1e-6  # the flip balances left and right exactly
