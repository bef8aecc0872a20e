import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import ROOT, TINY, run_py, tiny_cfg
from src.engine import trainer
from src.run import atomic
from src.run.atomic import save_torch
from src.errors import ConfigError
from src.config.schema import TrainConfig
from src.config.parsing import choices, parse
from src.data.tables import load_train
from src.model.losses import Criterion
from src.engine import builders
from src.engine.optim import build_optimizer, build_scheduler
from src.data.samplers import DistributedWeightedSampler, train_sampler
from src.engine.stopping import EarlyStopping


def test_early_stopping_min_mode_with_patience_and_min_delta():
    es = EarlyStopping("val_loss", "auto", patience=2, min_delta=0.1)
    assert es.mode == "min"
    assert es.step(1.0) and not es.should_stop
    assert not es.step(0.95)  # better, but by less than min_delta
    assert not es.should_stop
    assert not es.step(0.92)
    assert es.should_stop
    state = es.state_dict()
    again = EarlyStopping("val_loss", "auto", patience=2, min_delta=0.1)
    again.load_state_dict(state)
    assert again.should_stop and again.best == 1.0


def test_early_stopping_max_mode_resets_on_improvement():
    es = EarlyStopping("val_f1", "auto", patience=2)
    assert es.mode == "max"
    es.step(0.5)
    assert not es.step(0.4)
    assert es.step(0.6) and es.wait == 0
    assert EarlyStopping("val_loss", "max", 1).mode == "max"


@pytest.mark.parametrize("optimizer", choices(TrainConfig, "optimizer"))
@pytest.mark.parametrize("scheduler", choices(TrainConfig, "scheduler"))
def test_every_optimizer_and_scheduler_runs_a_step(optimizer, scheduler):
    cfg = tiny_cfg(optimizer=optimizer, scheduler=scheduler)
    model = builders.model(cfg)
    opt = build_optimizer(cfg, model)
    sched, when = build_scheduler(cfg, opt, steps_per_epoch=4)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randint(0, 255, (4, 3, 64, 48), dtype=torch.uint8)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    if when == "val_loss":
        sched.step(1.0)
    elif when is not None:
        sched.step()
    assert (sched is None) == (scheduler == "none")


def test_unknown_optimizer_or_scheduler_is_refused():
    with pytest.raises(ConfigError, match="sgd, adam, adamw"):
        parse(["--optimizer", "lamb"])
    cfg = tiny_cfg()
    cfg.scheduler = "step"
    with pytest.raises(ConfigError, match="cosine"):
        build_scheduler(cfg, build_optimizer(cfg, builders.model(cfg)), 1)


def test_weighted_sampler_draws_rare_classes_as_often_as_common_ones():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = train_sampler("weighted", labels, 1, 0, seed=0)
    drawn = labels[list(sampler)]
    assert 0.35 < drawn.mean() < 0.65
    split = [list(DistributedWeightedSampler(np.ones(10), 2, r, seed=3)) for r in (0, 1)]
    whole = list(DistributedWeightedSampler(np.ones(10), 1, 0, seed=3))
    assert sorted(split[0] + split[1]) == sorted(whole)


@pytest.mark.slow
def test_run_folder_holds_every_artefact(trained_run):
    log_dir, name = trained_run
    run = log_dir / name
    config_text = (run / "config.yaml").read_text()
    assert "git_commit:" in config_text and "model: test_efficientnet" in config_text
    log_text = (run / "train.log").read_text()
    assert "model: test_efficientnet" in log_text.split("fold 0 epoch 0")[0]
    assert "true \\ predicted" in log_text
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(zip(metrics["fold"], metrics["epoch"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for col in ("lr", "train_loss", "val_loss", "val_acc", "val_f1", "val_f1_mask", "val_f1_gender", "val_f1_age"):
        assert metrics[col].notna().all(), col
    assert list((run / "tb").glob("events.out.tfevents.*"))
    oofs = []
    for k in (0, 1):
        fold = run / f"fold{k}"
        for f in ("best_loss.pt", "best_f1.pt", "best_acc.pt", "last.pt"):
            state = torch.load(fold / f, map_location="cpu", weights_only=True)
            assert "model" in state
        last = torch.load(fold / "last.pt", weights_only=True)
        assert last["finished"] and last["epoch"] == 1
        assert {"optimizer", "scheduler", "scaler", "early_stopping", "rng", "best"} <= set(last)
        assert (fold / "confusion.png").stat().st_size > 1000
        oofs.append(pd.read_csv(fold / "oof.csv"))
    oof = pd.concat(oofs)
    assert oof["path"].is_unique and len(oof) == 168
    from src.metrics import macro_f1

    cv = json.loads((run / "cv.json").read_text())
    assert cv["cv_f1"] == pytest.approx(macro_f1(oof["label"], oof[[f"p{k}" for k in range(18)]].to_numpy().argmax(1)))
    assert set(cv["fold_f1"]) == {"0", "1"}


@pytest.mark.slow
def test_existing_run_is_refused_without_resume_or_overwrite(trained_run, dataset):
    log_dir, name = trained_run
    proc = run_py("train.py", "--data_dir", dataset, "--name", name, "--log_dir", log_dir, *TINY, check=False)
    assert proc.returncode == 1 and "--resume" in proc.stderr and "--overwrite" in proc.stderr
    before = (log_dir / name / "metrics.csv").read_text()
    proc = run_py("train.py", "--data_dir", dataset, "--name", name, "--log_dir", log_dir, *TINY, "--resume")
    assert "finished earlier, skipped" in proc.stderr
    assert (log_dir / name / "metrics.csv").read_text() == before


@pytest.mark.slow
def test_overwrite_replaces_a_run(dataset, tmp_path):
    args = ["--data_dir", dataset, "--name", "w", "--log_dir", tmp_path, *TINY, "--fold", "0", "--epochs", "1"]
    run_py("train.py", *args)
    (tmp_path / "w" / "marker").write_text("old")
    run_py("train.py", *args, "--overwrite")
    assert not (tmp_path / "w" / "marker").exists() and (tmp_path / "w" / "fold0" / "last.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("workers, extra", [(0, []), (2, []), (2, ["--uda", "true", "--uda_ratio", "0.5"]),
                                            (0, ["--ema", "true", "--ema_decay", "0.9"])],
                         ids=["workers0", "workers2", "workers2-uda", "workers0-ema"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(dataset, tmp_path, workers, extra):
    """Tolerance: 1e-5 absolute on losses and F1 (deterministic mode, CPU, same thread count), with loader
    workers too: augmentation is reseeded from (seed, fold, epoch, worker) and loaders never draw from the
    global RNG that dropout uses."""
    args = [sys.executable, "train.py", "--data_dir", str(dataset), "--log_dir", str(tmp_path), *TINY,
            "--fold", "0", "--epochs", "2", "--deterministic", "true", "--msd_count", "2", "--aug", "original",
            "--num_workers", str(workers), *extra]
    run_py(*args[1:], "--name", "straight")
    proc = subprocess.Popen(args + ["--name", "killed"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "fold0" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 0 and not state["finished"], "the kill should land during epoch 1"
    run_py(*args[1:], "--name", "killed", "--resume")
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv").set_index("epoch")
    b = pd.read_csv(tmp_path / "killed" / "metrics.csv").set_index("epoch")
    assert list(b.index) == [0, 1]
    for col in ("train_loss", "val_loss", "val_f1", "val_acc"):
        assert a.loc[1, col] == pytest.approx(b.loc[1, col], abs=1e-5), col
    assert torch.load(last, weights_only=True)["finished"]


def test_crash_during_checkpoint_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_torch({"epoch": 1, "w": torch.ones(3)}, path)

    def dies_halfway(data, f):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "write_bytes", dies_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_torch({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_nan_loss_stops_the_fold_with_a_message(dataset, tmp_path, monkeypatch):
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="nan", fold=0, epochs=3)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    steps_per_epoch = int((table["fold"] != 0).sum()) // cfg.batch_size  # drop_last
    real_forward, calls = Criterion.forward, {"train": 0}

    def forward(self, logits, target):  # the loss turns NaN from the first training step of epoch 1
        loss = real_forward(self, logits, target)
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] > steps_per_epoch:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(Criterion, "forward", forward)
    with pytest.raises(trainer.NonFiniteLoss, match="fold 0 epoch 1: the training loss became nan"):
        trainer.train(cfg)
    best = torch.load(tmp_path / "nan" / "fold0" / "best_f1.pt", weights_only=True)
    assert best["epoch"] == 0 and all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    assert torch.load(tmp_path / "nan" / "fold0" / "last.pt", weights_only=True)["epoch"] == 0


@pytest.mark.parametrize("overrides", [
    dict(sampler="weighted", loss="focal", head="arcface", class_weights="false"),
    dict(grad_clip=1.0, grad_clip_mode="agc", pooling="avg", neck="bn", cache="disk"),
    dict(grad_clip=0.5, grad_clip_mode="norm", scheduler="plateau", cache="ram", aug="original", num_workers=2),
    dict(grad_clip=0.01, grad_clip_mode="value", optimizer="sgd", scheduler="cosine", pretrained="false"),
    dict(early_stop_monitor="val_f1", early_stop_patience=0, epochs=3, channels_last="false", age_filter=58),
    dict(heads="per_task", head="arcface", loss="focal", task_weights="1,0.5,2", mix_prob=1.0, mix_mode="halves"),
    dict(heads="per_task", head="linear", loss="ce", label_smoothing=0.1, mix_prob=0.5, mix_mode="cutmix"),
    dict(heads="joint", head="arcface", loss="ce", mix_prob=1.0, mix_mode="mixup", uda="true"),
])
@pytest.mark.slow
def test_option_combinations_train_end_to_end(dataset, tmp_path, overrides):
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="opt", fold=1, **overrides)
    cv = trainer.train(cfg)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    assert 0 <= cv["cv_f1"] <= 1 and cv["oof_rows"] == (table["fold"] == 1).sum()
    metrics = pd.read_csv(tmp_path / "opt" / "metrics.csv")
    if overrides.get("early_stop_patience") == 0:  # stops at the first epoch that does not improve val_f1
        f1 = metrics["val_f1"].tolist()
        assert len(f1) == 3 or f1[-1] <= max(f1[:-1])
        assert all(b > a for a, b in zip(f1[:-2], f1[1:-1]))
    if overrides.get("cache") == "disk":
        assert list((tmp_path / "cache").glob("*.npy"))
