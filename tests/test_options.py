"""Options whose effect is a setting handed to a library: check that the setting arrives."""
import contextlib

import pandas as pd
import pytest
import torch

from tests.helpers import tiny_cfg
from src.engine import trainer
from src.errors import DataError
from src.data.dataset import FaceDataset
from src.data.tables import load_unlabeled
from src.engine.forward import autocast
from src.data.loaders import default_workers, make_loader
from src.engine.optim import build_optimizer, build_scheduler
from src.engine import builders
from src.engine.builders import work_size


def test_optimizer_hyperparameters_arrive():
    cfg = tiny_cfg(optimizer="sgd", lr=0.3, momentum=0.8, nesterov="false", weight_decay=0.01)
    group = build_optimizer(cfg, builders.model(cfg)).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (0.3, 0.8, False, 0.01)
    group = build_optimizer(tiny_cfg(optimizer="adamw", weight_decay=0.05), builders.model(cfg)).param_groups[0]
    assert group["weight_decay"] == 0.05


def test_scheduler_hyperparameters_arrive():
    cfg = tiny_cfg(scheduler="cosine", cosine_t_max=7, eta_min=1e-5, lr=0.1)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert (sched.T_max, sched.eta_min, when) == (7, 1e-5, "epoch")
    cfg = tiny_cfg(scheduler="onecycle", onecycle_pct_start=0.4, epochs=3, lr=0.1)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert sched.total_steps == 30 and when == "batch"
    cfg = tiny_cfg(scheduler="plateau", plateau_factor=0.3, plateau_patience=4)
    sched, when = build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 10)
    assert (sched.factor, sched.patience, when) == (0.3, 4, "val_loss")


def test_loader_settings():
    import os

    cores = len(os.sched_getaffinity(0))
    assert default_workers(3) == 3 and default_workers(-1) == min(cores, 16)
    assert default_workers(-1, torch.device("cpu")) == max(min(cores, 16) // 2, 1)
    ds = FaceDataset([None] * 4)
    loader = make_loader(ds, torch.device("cpu"), 2, num_workers=1, prefetch_factor=3)
    assert loader.prefetch_factor == 3 and loader.persistent_workers and loader.num_workers == 1
    assert make_loader(ds, torch.device("cpu"), 2, num_workers=0).num_workers == 0


def test_amp_is_autocast_on_cuda_only():
    assert isinstance(autocast("bf16", torch.device("cpu")), contextlib.nullcontext)
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        ctx = autocast("fp16", torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    assert isinstance(autocast("none", torch.device("cuda")), contextlib.nullcontext)


def test_cache_margin_sets_the_work_size():
    assert work_size(tiny_cfg(img_height=100, img_width=80, cache_margin=1.2)) == (120, 96)


def test_model_options_arrive():
    model = builders.model(tiny_cfg(gem_p=2.5, neck="prelu_dropout", neck_dropout=0.3, neck_dim=24, msd_p=0.4,
                                 msd_count=3))
    assert model.pool.p.item() == pytest.approx(2.5) and model.neck[-1].p == 0.3
    assert model.neck[0].out_features == 24 and [d.p for d in model.dropouts] == [0.4] * 3


@pytest.mark.slow
def test_compile_option_compiles_the_training_model(dataset, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer.train(tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="c", fold=0, epochs=1, compile="true"))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)


def test_unlabeled_dir_lists_images_and_skips_junk(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.png", "._a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    table = load_unlabeled("unused", str(tmp_path))
    assert list(table["ImageID"]) == ["a.jpg", "sub/b.png"]
    with pytest.raises(DataError, match="unlabeled_dir not found"):
        load_unlabeled("unused", str(tmp_path / "none"))


@pytest.mark.slow
def test_uda_reads_a_folder_of_unlabeled_images(dataset, tmp_path):
    folder = tmp_path / "unl"
    folder.mkdir()
    for f in list((dataset / "eval" / "images").iterdir())[:6]:
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="u", fold=0, epochs=1, uda="true",
                   unlabeled_dir=folder)
    trainer.train(cfg)
    assert pd.read_csv(tmp_path / "u" / "metrics.csv")["train_uda_loss"].notna().all()
