import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tests.helpers import ROOT, TINY, run_py, tiny_cfg
from src.predict import infer as predict
from src.engine import trainer
from src.config.schema import InferConfig, PseudoConfig
from src.errors import DataError
from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.tables import load_pseudo, load_train
from src.engine.forward import predict_loader as forward_predict
from src.engine.forward import probabilities
from src.labels import PROB_COLUMNS as PROBS
from src.data.loaders import make_loader
from src.run.rundir import RunDir
from src.engine.builders import eval_transform


def infer_cfg(dataset, log_dir, **kw):
    return tiny_cfg(InferConfig, data_dir=dataset, log_dir=log_dir, **kw)


def average_probs(models, loader, cfg, tta):
    return probabilities(forward_predict(models, loader, torch.device("cpu"), tta)[1]).numpy()


@pytest.mark.slow
def test_submission_has_the_rows_and_order_of_info(trained_run, dataset, tmp_path):
    log_dir, name = trained_run
    out = predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "sub.csv"))
    sub, info = pd.read_csv(out), pd.read_csv(dataset / "eval" / "info.csv")
    assert list(sub.columns) == ["ImageID", "ans"] and list(sub["ImageID"]) == list(info["ImageID"])
    assert sub["ans"].dtype.kind == "i" and sub["ans"].between(0, 17).all()
    probs = pd.read_csv(tmp_path / "eval_probs.csv")
    assert list(probs["ImageID"]) == list(info["ImageID"])
    assert np.allclose(probs[PROBS].sum(axis=1), 1, atol=1e-4)
    assert (probs[PROBS].to_numpy().argmax(1) == sub["ans"]).all()
    assert (tmp_path / "eval_preview.png").stat().st_size > 10_000


@pytest.mark.slow
def test_infer_cli_default_paths(trained_run, dataset):
    log_dir, name = trained_run
    run_py("infer.py", "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--checkpoint", "last",
           "--tta", "none", "--num_workers", "0")
    assert (log_dir / name / "submission.csv").is_file() and (log_dir / name / "eval_probs.csv").is_file()


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


@pytest.mark.slow
def test_runs_of_different_input_sizes_ensemble(trained_run, dataset, tmp_path):
    log_dir, name = trained_run
    other = tmp_path / "logs"
    shutil.copytree(log_dir / name, other / name)
    run_py("train.py", "--data_dir", dataset, "--log_dir", other, "--name", "small", *TINY, "--fold", "0",
           "--epochs", "1", "--img_height", "40", "--img_width", "32", "--model", "resnet10t")
    singles = []
    for run in (name, "small"):
        predict.infer(infer_cfg(dataset, other, run=run))
        singles.append(pd.read_csv(other / run / "eval_probs.csv")[PROBS].to_numpy())
    predict.infer(infer_cfg(dataset, other, runs=f"{name},small"))
    both = pd.read_csv(other / f"ensemble_{name}-small" / "eval_probs.csv")[PROBS].to_numpy()
    assert np.allclose(both, (singles[0] + singles[1]) / 2, atol=2e-5)


@pytest.mark.slow
def test_missing_inputs_fail_before_any_model_loads(trained_run, dataset, tmp_path, monkeypatch):
    log_dir, name = trained_run

    def no_loading(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(predict, "load_models", no_loading)
    data = tmp_path / "d"
    shutil.copytree(dataset, data)
    victim = next((data / "eval" / "images").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match=f"image .*{victim.name} not found"):
        predict.infer(infer_cfg(data, log_dir, run=name))
    with pytest.raises(FileNotFoundError, match="run .*nope: not found"):
        predict.infer(infer_cfg(dataset, log_dir, run="nope"))
    logs = tmp_path / "logs"
    shutil.copytree(log_dir / name, logs / name)
    (logs / name / "fold1" / "best_acc.pt").unlink()
    with pytest.raises(FileNotFoundError, match="fold1/best_acc.pt"):
        predict.infer(infer_cfg(dataset, logs, run=name, checkpoint="best_acc"))
    proc = run_py("infer.py", "--data_dir", dataset, "--log_dir", logs, "--run", name, "--checkpoint", "best_acc",
                  check=False)
    assert proc.returncode == 1 and "best_acc.pt" in proc.stderr


@pytest.mark.slow
def test_pseudo_threshold_filters_and_pseudo_rows_never_validate(own_run, dataset, tmp_path):
    logs, name = own_run
    def pseudo_cfg(**kw):
        return tiny_cfg(PseudoConfig, data_dir=dataset, log_dir=logs, run=name, **kw)

    everything = predict.make_pseudo_labels(pseudo_cfg(name="p0", pseudo_threshold=0), RunDir(logs, "p0"))
    all_rows = pd.read_csv(everything)
    assert len(all_rows) == 28 and list(all_rows.columns) == ["path", "label", "confidence"]
    cut = float(all_rows["confidence"].median())
    kept = pd.read_csv(predict.make_pseudo_labels(pseudo_cfg(name="p1", pseudo_threshold=cut), RunDir(logs, "p1")))
    assert (kept["confidence"] >= cut).all() and len(kept) == (all_rows["confidence"] >= cut).sum()

    cfg = tiny_cfg(data_dir=dataset)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    pseudo = load_pseudo(str(everything))
    train_ds, train_labels, val_ds, val_rows = trainer.fold_datasets(
        cfg, table, FileImages(table["path"]), 0, pseudo=pseudo, pseudo_images=FileImages(pseudo["path"]))
    assert len(train_ds) == (table["fold"] != 0).sum() + 28 and len(train_labels) == len(train_ds)
    assert not set(table["path"].iloc[val_rows]) & set(all_rows["path"])

    proc = run_py("pseudo_train.py", "--data_dir", dataset, "--log_dir", logs, "--run", name, "--name", "round2",
                  *TINY, "--fold", "0", "--epochs", "1", "--pseudo_threshold", cut)
    assert "pseudo labels: kept" in proc.stderr
    oof = pd.read_csv(logs / "round2" / "fold0" / "oof.csv")
    assert not set(oof["path"]) & set(all_rows["path"]) and len(oof) == (table["fold"] == 0).sum()
    saved = (logs / "round2" / "config.yaml").read_text()
    assert "round2/pseudo_labels.csv" in saved and "\nrun:" not in saved  # training keys only
    assert f"run: {name}" in (logs / "round2" / "pseudo_labels.yaml").read_text()  # who taught it

    # a second round taught by round2 loads round2's config.yaml, whose pseudo_csv names round2's labels:
    # it must make fresh labels with round2, not reuse them
    env = {"PYTHON": sys.executable, "DATA_DIR": str(dataset), "LOG_DIR": str(logs), "RUN": "round2",
           "NAME": "round3"}
    proc = subprocess.run(["bash", "pseudo_train.sh", "--pseudo_threshold", "0"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round2/pseudo_labels.csv replaced by the fresh labels" in proc.stderr
    round3 = RunDir(logs, "round3")
    assert "run: round2" in round3.pseudo_settings.read_text()
    assert f"pseudo_csv: {round3.pseudo_labels}" in round3.config.read_text()
    assert len(pd.read_csv(round3.pseudo_labels)) == 28  # threshold 0 keeps every image, round2 kept fewer


@pytest.mark.slow
def test_short_uda_run_logs_both_losses(dataset, tmp_path):
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="uda", fold=0, epochs=1, uda="true", uda_ratio=0.5,
                   uda_threshold=0.1, uda_temperature=0.5)
    cv = trainer.train(cfg)
    metrics = pd.read_csv(tmp_path / "uda" / "metrics.csv")
    assert np.isfinite(metrics[["train_sup_loss", "train_uda_loss"]].to_numpy()).all()
    assert (metrics["train_uda_loss"] >= 0).all() and 0 <= cv["cv_f1"] <= 1
    assert metrics["train_loss"].iloc[0] == pytest.approx(
        metrics["train_sup_loss"].iloc[0] + 5.0 * metrics["train_uda_loss"].iloc[0], rel=1e-4)


def test_score_tool_matches_the_metrics_module(tmp_path):
    truth = pd.DataFrame({"ImageID": ["a", "b", "c", "d"], "ans": [0, 7, 17, 7]})
    sub = pd.DataFrame({"ImageID": ["d", "c", "b", "a"], "ans": [7, 17, 8, 0]})
    truth.to_csv(tmp_path / "t.csv", index=False)
    sub.to_csv(tmp_path / "s.csv", index=False)
    out = run_py("-m", "tools.score", tmp_path / "s.csv", tmp_path / "t.csv").stdout
    from src.metrics import macro_f1

    assert f"macro_f1={macro_f1([0, 7, 17, 7], [0, 8, 17, 7]):.4f}" in out and "acc=0.7500" in out
    sub.iloc[:2].to_csv(tmp_path / "s.csv", index=False)
    assert "lacks 2 ImageIDs" in run_py("-m", "tools.score", tmp_path / "s.csv", tmp_path / "t.csv", check=False).stderr
