"""src/engine/trainer.py: end-to-end training, resume, kills, folds side by side, non-finite numbers, fold seeds."""
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

import infer
import train
from src.data.tables import load_train
from src.engine import trainer
from src.engine.fold import fold_datasets
from src.errors import NonFinite
from src.model.losses import Criterion
from src.run.rundir import RunDir
from tests.helpers import (CORRECTIONS, ROOT, TINY, cli, copy_data, killed_once_saved, make_data, one_line, run_py,
                           tiny_cfg)


@pytest.mark.parametrize("overrides", [
    dict(sampler="weighted", loss="focal", head="arcface", class_weights="false"),
    dict(grad_clip=1.0, grad_clip_mode="agc", pooling="avg", neck="bn", cache="disk"),
    dict(grad_clip=0.5, grad_clip_mode="norm", scheduler="plateau", cache="ram", aug="original", num_workers=2),
    dict(grad_clip=0.01, grad_clip_mode="value", optimizer="sgd", scheduler="cosine", pretrained="false"),
    dict(early_stop_monitor="val_f1", early_stop_patience=0, epochs=3, channels_last="false", age_filter=58),
    dict(heads="per_task", head="arcface", loss="focal", task_weights="1,0.5,2", mix_prob=1.0, mix_mode="halves"),
    dict(heads="per_task", head="linear", loss="ce", label_smoothing=0.1, mix_prob=0.5, mix_mode="cutmix"),
    dict(heads="joint", head="arcface", loss="ce", mix_prob=1.0, mix_mode="mixup", uda="true"),
    dict(heads="per_task", head="linear", loss="f1", mix_prob=1.0, mix_mode="cutmix"),
    dict(heads="joint", head="arcface", loss="ce_f1", f1_weight=0.5, label_smoothing=0.1, mix_prob=0.5,
         mix_mode="mixup"),
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


@pytest.mark.slow
def test_compile_option_compiles_the_training_model(dataset, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    trainer.train(tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="c", fold=0, epochs=1, compile="true"))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)


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


@pytest.mark.slow
def test_overwrite_deletes_only_after_every_check_passes(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, "--fold", "0", "--epochs", "1"]
    assert cli(train.main, *args, capsys=capsys)[0] == 0
    before = RunDir(tmp_path, "r").last(0).read_bytes()
    for extra, message in ((["--pretrained", "true", "--pretrained_path", tmp_path / "typo.pth"], "file not found"),
                           (["--n_folds", "50"], "n_folds 50 exceeds the 24 people"),
                           (["--pseudo_csv", tmp_path / "none.csv"], "pseudo_csv not found"),
                           (["--lr", "-1"], "--lr must be > 0")):
        code, err = cli(train.main, *args, "--overwrite", *extra, capsys=capsys)
        assert code in (1, 2) and message in one_line(err)
        assert RunDir(tmp_path, "r").last(0).read_bytes() == before  # the old run is untouched


def test_bad_values_fail_before_a_run_folder_exists_so_the_rerun_works(dataset, tmp_path, capsys):
    for bad in (["--lr", "nan"], ["--lr", "-1"], ["--n_folds", "50"], ["--weight_decay", "inf"]):
        code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, *bad,
                        capsys=capsys)
        assert code in (1, 2) and one_line(err)
        assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("workers, extra", [(2, ["--uda", "true", "--uda_ratio", "0.5"]),
                                            (0, ["--ema", "true", "--ema_decay", "0.9"])],
                         ids=["workers2-uda", "workers0-ema"])  # each also covers its loader workers
def test_resume_after_sigkill_matches_an_uninterrupted_run(dataset, tmp_path, workers, extra):
    """Tolerance: 1e-5 absolute on losses and F1 (deterministic mode, CPU, same thread count), with loader
    workers too: augmentation is reseeded from (seed, fold, epoch, worker) and loaders never draw from the
    global RNG that dropout uses."""
    args = [sys.executable, "train.py", "--data_dir", str(dataset), "--log_dir", str(tmp_path), *TINY,
            "--fold", "0", "--epochs", "2", "--deterministic", "true", "--msd_count", "2", "--aug", "original",
            "--num_workers", str(workers), *extra]
    run_py(*args[1:], "--name", "straight")
    last = tmp_path / "killed" / "fold0" / "last.pt"
    killed_once_saved(args[1:] + ["--name", "killed"], last)
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 0 and not state["finished"], "the kill should land during epoch 1"
    run_py(*args[1:], "--name", "killed", "--resume")
    a = pd.read_csv(tmp_path / "straight" / "metrics.csv").set_index("epoch")
    b = pd.read_csv(tmp_path / "killed" / "metrics.csv").set_index("epoch")
    assert list(b.index) == [0, 1]
    for col in ("train_loss", "val_loss", "val_f1", "val_acc"):
        assert a.loc[1, col] == pytest.approx(b.loc[1, col], abs=1e-5), col
    assert torch.load(last, weights_only=True)["finished"]


@pytest.mark.slow
def test_resume_with_fewer_epochs_finishes_and_onecycle_length_is_fixed(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "r", *TINY, "--fold", "0"]
    assert cli(train.main, *args, capsys=capsys)[0] == 0  # 2 epochs
    from src.run.checkpoint import FoldState

    state = FoldState.load(RunDir(tmp_path, "r").last(0))
    state.finished = False
    state.save(RunDir(tmp_path, "r").last(0))
    assert cli(train.main, *args, "--epochs", "1", "--resume", capsys=capsys)[0] == 0
    assert FoldState.load(RunDir(tmp_path, "r").last(0)).finished
    one = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "oc", *TINY, "--fold", "0", "--scheduler",
           "onecycle", "--epochs", "1"]
    assert cli(train.main, *one, capsys=capsys)[0] == 0
    code, err = cli(train.main, *one[:-2], "--epochs", "3", "--resume", capsys=capsys)
    assert code == 2 and "epochs (saved 1, now 3)" in one_line(err)


def start(args, log):
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_folds_trained_at_once_on_a_new_run_keep_every_row(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "par", *TINY, "--n_folds", "3", "--epochs", "2",
            "--resume"]
    procs = [start([*args, "--fold", k], tmp_path / f"{k}.log") for k in (1, 2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [(tmp_path / f"{k}.log").read_text()[-2000:]
                                                            for k in (1, 2)]
    metrics = pd.read_csv(tmp_path / "par" / "metrics.csv")
    assert sorted(zip(metrics["fold"], metrics["epoch"])) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert sorted(pd.read_csv(tmp_path / "par" / "folds.csv")["fold"].unique()) == [0, 1, 2]

    # a third process with other settings is refused, naming the keys
    code, err = cli(train.main, *args, "--fold", "0", "--lr", "0.5", capsys=capsys)
    assert code == 2 and "lr (saved 0.001, now 0.5)" in err


@pytest.mark.slow
def test_a_second_trainer_of_the_same_fold_is_refused_naming_the_first(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "same", *TINY, "--epochs", "500", "--early_stop_patience", "500", "--fold", "0",
            "--resume"]
    first = start(args, tmp_path / "first.log")
    lock = tmp_path / ".same.fold0.lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    try:  # the second and third trainers in this process: the lock is the first process's
        second = cli(train.main, *args, capsys=capsys)
        wipe = cli(train.main, *args[:-1], "--overwrite", capsys=capsys)
    finally:
        first.kill()
        first.wait()
    assert second[0] == 1 and f"fold 0 of run same is held by process {first.pid}" in second[1]
    assert wipe[0] == 1 and "is held by process" in wipe[1]  # --overwrite waits for no trainer
    assert (tmp_path / "same" / "config.yaml").is_file()


@pytest.mark.slow
def test_resume_reuses_the_saved_folds_whatever_the_seed_says(dataset, tmp_path, capsys):
    args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", "f", *TINY, "--epochs", "1"]
    assert cli(train.main, *args, "--fold", "0", capsys=capsys)[0] == 0
    assert cli(train.main, *args, "--fold", "1", "--seed", "7", "--resume", capsys=capsys)[0] == 0
    oof = pd.concat(pd.read_csv(RunDir(tmp_path, "f").oof(k)) for k in (0, 1))
    assert oof["path"].is_unique and len(oof) == 168  # each image out of fold exactly once

    code, err = cli(train.main, *args, "--fold", "1", "--age_filter", "58", "--resume", capsys=capsys)
    assert code == 2 and "age_filter (saved 59, now 58)" in one_line(err)

    data = copy_data(dataset, tmp_path)
    people = pd.read_csv(data / "train" / "train.csv", dtype=str)
    people.drop(index=[3]).to_csv(data / "train" / "train.csv", index=False)
    code, err = cli(train.main, *args[2:], "--data_dir", data, "--fold", "1", "--resume", capsys=capsys)
    assert code == 1 and f"1 people removed ({people['id'][3]})" in one_line(err)


@pytest.mark.slow
def test_a_fold_gets_the_same_weights_alone_or_after_other_folds(dataset, tmp_path, capsys):
    base = ["--data_dir", dataset, *TINY, "--epochs", "1"]
    assert cli(train.main, *base, "--log_dir", tmp_path / "a", "--name", "all", capsys=capsys)[0] == 0
    assert cli(train.main, *base, "--log_dir", tmp_path / "b", "--name", "one", "--fold", "1", capsys=capsys)[0] == 0
    together = pd.read_csv(RunDir(tmp_path / "a", "all").oof(1))
    alone = pd.read_csv(RunDir(tmp_path / "b", "one").oof(1))
    from src.labels import PROB_COLUMNS

    assert np.allclose(together[PROB_COLUMNS].to_numpy(), alone[PROB_COLUMNS].to_numpy(), atol=1e-5)


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
    with pytest.raises(NonFinite, match="fold 0 epoch 1: the training loss became nan"):
        trainer.train(cfg)
    best = torch.load(tmp_path / "nan" / "fold0" / "best_f1.pt", weights_only=True)
    assert best["epoch"] == 0 and all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    assert torch.load(tmp_path / "nan" / "fold0" / "last.pt", weights_only=True)["epoch"] == 0


@pytest.mark.slow
def test_non_finite_validation_fails_the_fold_and_infer_refuses_nan(dataset, tmp_path, capsys, monkeypatch):
    from src.engine import epoch

    real = epoch.predict_loader

    def nan_logits(*a, **k):
        idx, logits = real(*a, **k)
        return idx, logits.map(lambda t: t * float("nan"))

    monkeypatch.setattr(epoch, "predict_loader", nan_logits)
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "n", *TINY, "--fold", "0",
                    capsys=capsys)
    assert code == 1 and "fold 0 epoch 0: the validation loss is nan" in one_line(err)
    run = RunDir(tmp_path, "n")
    assert not run.last(0).exists() and not run.checkpoint(0, "best_f1").exists()
    monkeypatch.undo()

    assert cli(train.main, "--data_dir", dataset, "--log_dir", tmp_path, "--name", "ok", *TINY, "--fold", "0",
               "--epochs", "1", capsys=capsys)[0] == 0
    best = RunDir(tmp_path, "ok").checkpoint(0, "best_f1")
    state = torch.load(best, weights_only=True)
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, best)
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", tmp_path, "--run", "ok", capsys=capsys)
    assert code == 1 and "run ok fold 0" in one_line(err) and "non-finite" in err
    assert not (tmp_path / "ok" / "submission.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143)])  # SIGINT's 130: tests/test_errors.py
def test_a_signal_stops_training_in_one_line_and_resume_continues(dataset, tmp_path, sig, code):
    args = [sys.executable, "train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "sig", *TINY,
            "--epochs", "4", "--num_workers", "1", "--fold", "0"]
    proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    last = tmp_path / "sig" / "fold0" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == code
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({name}) in fold 0, epoch ")
    assert "is intact; continue with --resume" in lines[0] and "Traceback" not in err
    assert lines[0] in (tmp_path / "sig" / "train.log").read_text()
    assert not list(tmp_path.rglob("*.tmp"))
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert left == []  # its loader workers ended with it
    resumed = run_py("train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "sig", *TINY, "--epochs", "4",
                     "--num_workers", "1", "--fold", "0", "--resume")
    assert "resumed from" in resumed.stderr
    assert len(pd.read_csv(tmp_path / "sig" / "fold0" / "metrics.csv")) == 4


def test_drop_ages_reaches_training_only(dataset):
    table = load_train(dataset, CORRECTIONS, 59, 2, seed=0)
    span = (table["age"] >= 30) & (table["age"] <= 45)
    assert span.any() and (~span).any()
    cfg = tiny_cfg(drop_ages="30-45")
    rows = list(range(len(table)))
    for k in (0, 1):
        train_ds, train_labels, val_ds, val_rows = fold_datasets(cfg, table, rows, k)
        trained = table.iloc[train_ds.images.indices]
        assert not trained["age"].between(30, 45).any() and (trained["fold"] != k).all()
        assert len(trained) == ((table["fold"] != k) & ~span).sum()
        assert list(train_labels) == list(trained["train_label"])
        assert list(val_rows) == list(np.flatnonzero(table["fold"] == k))  # every person validates
        assert list(val_ds.labels) == list(table["label"].iloc[val_rows])  # with the true bands
    everyone = fold_datasets(tiny_cfg(), table, rows, 0)[0]
    assert len(everyone) == (table["fold"] != 0).sum()


@pytest.mark.slow
def test_forty_people_with_four_folds_train_with_the_warning(tmp_path, capsys):
    data = make_data(tmp_path / "d40", train_people=40, eval_people=2, seed=11)
    code, err = cli(train.main, "--data_dir", data, "--log_dir", tmp_path / "logs", "--name", "small", *TINY,
                    "--n_folds", "4", "--fold", "0", "--epochs", "1", "--drop_ages", "57-59", capsys=capsys)
    assert code == 0, err
    assert "warning: stratum" in err and "fold(s) validate without it" in err
    log = RunDir(tmp_path / "logs", "small").train_log.read_text()
    assert "warning: stratum" in log and "left out of training (they still validate)" in log
    assert RunDir(tmp_path / "logs", "small").cv.is_file()



@pytest.mark.slow
def test_face_crops_train_and_predict_with_boxes_kept_in_the_cache_only(dataset, tmp_path, capsys):
    before = sorted((p, p.stat().st_mtime_ns) for p in dataset.rglob("*"))
    logs = tmp_path / "logs"
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", "face", *TINY, "--fold", "0",
                    "--epochs", "1", "--crop", "face", "--cache", "disk", capsys=capsys)
    assert code == 0, err
    line = next(s for s in RunDir(logs, "face").train_log.read_text().splitlines() if "crop face:" in s)
    fell_back = int(line.split("crop face: ")[1].split()[0])
    assert 0 < fell_back < 168 and "of 168 images" in line  # drawn masked faces defeat the detector, bare ones not
    assert (logs / "cache" / "faces-mtcnn.json").is_file() and list((logs / "cache").glob("*.npy"))
    assert cli(infer.main, "--data_dir", dataset, "--log_dir", logs, "--run", "face", capsys=capsys)[0] == 0
    assert len(pd.read_csv(RunDir(logs, "face").submission)) == 28
    assert sorted((p, p.stat().st_mtime_ns) for p in dataset.rglob("*")) == before
    report = json.loads(run_py("train.py", "--data_dir", dataset, "--log_dir", logs, "--check_data", "--n_folds",
                               "2", "--crop", "face").stdout)
    assert report["crop_train"] == dict(kind="face", images=168, fallbacks=fell_back)
    assert report["crop_eval"]["images"] == 28 and report["crop_eval"]["kind"] == "face"


@pytest.mark.slow
def test_oof_from_last_keeps_the_last_epochs_rows_and_infer_auto_follows(dataset, tmp_path, capsys):
    from src.metrics import evaluate
    from src.labels import PROB_COLUMNS
    from src.predict.plans import plan_run

    for kind in ("best_f1", "last"):
        args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", kind, *TINY, "--fold", "0", "--lr", "3e-3",
                "--oof_from", kind]
        assert cli(train.main, *args, capsys=capsys)[0] == 0
        run = RunDir(tmp_path, kind)
        oof, metrics = pd.read_csv(run.oof(0)), pd.read_csv(run.metrics)
        assert metrics["val_f1"].idxmax() == 0 and len(metrics) == 2  # so the best epoch is not the last
        got = evaluate(oof["label"], oof[PROB_COLUMNS].to_numpy())
        row = metrics.iloc[-1] if kind == "last" else metrics.loc[metrics["val_f1"].idxmax()]
        assert got["f1"] == pytest.approx(row["val_f1"], abs=1e-5) and got["acc"] == pytest.approx(row["val_acc"], abs=1e-5)
        plan = plan_run(tmp_path, kind, "auto")  # infer's default: the weights whose rows are oof.csv
        assert plan.checkpoint == kind and plan.checkpoints == [run.checkpoint(0, kind)]
    assert plan_run(tmp_path, "last", "best_f1").checkpoints == [RunDir(tmp_path, "last").checkpoint(0, "best_f1")]


def test_val_every_validates_only_its_epochs_and_the_last_without_changing_training(dataset, tmp_path, capsys):
    from src.run.checkpoint import load_weights

    runs = {}
    for every in (1, 2):
        args = ["--data_dir", dataset, "--log_dir", tmp_path, "--name", f"every{every}", *TINY, "--fold", "0",
                "--epochs", "3", "--val_every", str(every), "--oof_from", "best_f1"]
        code, err = cli(train.main, *args, capsys=capsys)
        assert code == 0
        runs[every] = RunDir(tmp_path, f"every{every}")
    assert "fold 0 epoch 0  lr" in err and "not validated (val_every)" in err
    full, sparse = (pd.read_csv(runs[k].metrics) for k in (1, 2))
    assert list(full.columns) == list(sparse.columns)
    # epoch 0 is skipped; epoch 1 is the second, epoch 2 the fold's last
    assert sparse["val_f1"].isna().tolist() == [True, False, False] and not full["val_f1"].isna().any()
    assert np.allclose(full.loc[1:, "val_loss"], sparse.loc[1:, "val_loss"], atol=1e-5)
    assert full["train_loss"].tolist() == pytest.approx(sparse["train_loss"].tolist(), abs=1e-5)
    # best_f1.pt is chosen among the validated epochs only
    best_epoch = int(full.loc[1:, "val_f1"].idxmax())
    assert torch.load(runs[2].checkpoint(0, "best_f1"), weights_only=True)["epoch"] == best_epoch
    weights = [load_weights(runs[k].last(0)) for k in (1, 2)]
    assert all(torch.allclose(weights[0][name], weights[1][name], atol=1e-6) for name in weights[0])


@pytest.mark.slow
def test_a_resume_that_ends_a_fold_on_an_epoch_not_validated_validates_it(dataset, tmp_path):
    from src.run.checkpoint import FoldState

    class Interrupted(Exception):
        pass

    def interrupt_after_epoch_0(k, epoch, metrics, last):
        assert metrics == {}  # val_every 3: epoch 0 was not validated
        raise Interrupted

    settings = dict(data_dir=dataset, log_dir=tmp_path, fold=0, val_every=3, oof_from="last")
    for name in ("short", "due"):
        with pytest.raises(Interrupted):
            trainer.train(tiny_cfg(name=name, epochs=3, **settings), interrupt_after_epoch_0)
    short = RunDir(tmp_path, "short")
    assert short.last(0).is_file() and not short.oof(0).exists() and not short.checkpoint(0, "best_f1").exists()
    val_rows = (pd.read_csv(short.folds_csv)["fold"] == 0).sum() * 7

    # fewer epochs than already ran: the saved epoch becomes the fold's last, and is validated now
    trainer.train(tiny_cfg(name="short", epochs=1, resume="true", **settings))
    state = FoldState.load(short.last(0))
    assert state.finished and state.epoch == 0
    assert len(pd.read_csv(short.oof(0))) == val_rows and short.checkpoint(0, "best_f1").is_file()

    # a stopper already due (patience lowered below its saved wait, and a best val_loss no epoch beats): the epoch
    # that stops the fold validates
    due = RunDir(tmp_path, "due")
    state = FoldState.load(due.last(0))
    state.early_stopping = dict(best=0.0, wait=2)
    state.save(due.last(0))
    trainer.train(tiny_cfg(name="due", epochs=3, early_stop_patience=1, resume="true", **settings))
    metrics = pd.read_csv(due.metrics)
    assert metrics["epoch"].tolist() == [0, 1]  # stopped after epoch 1, which val_every 3 would have skipped
    assert metrics["val_f1"].isna().tolist() == [True, False]
    assert FoldState.load(due.last(0)).finished and len(pd.read_csv(due.oof(0))) == val_rows


@pytest.mark.slow
def test_resume_of_a_run_that_saved_no_epoch_takes_the_new_settings(dataset, tmp_path, monkeypatch):
    """A run that failed before its first epoch holds nothing to continue: --resume with other settings starts it
    again instead of refusing them."""
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="early", fold=0, epochs=1)

    def fail(ins, k):
        raise RuntimeError("failed before the first epoch")

    monkeypatch.setattr(trainer, "train_fold", fail)
    with pytest.raises(RuntimeError, match="before the first epoch"):
        trainer.train(cfg)
    run = RunDir(tmp_path, "early")
    assert run.exists and not run.last(0).is_file()
    monkeypatch.undo()
    trainer.train(tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="early", fold=0, epochs=1, lr=3e-3,
                           resume="true"))
    assert "lr: 0.003" in run.config.read_text() and run.last(0).is_file()
    with pytest.raises(trainer.ConfigError, match=r"lr \(saved 0.003, now 0.001\)"):  # a saved epoch: refused
        trainer.train(tiny_cfg(data_dir=dataset, log_dir=tmp_path, name="early", fold=1, epochs=1, resume="true"))
