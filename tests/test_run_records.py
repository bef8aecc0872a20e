"""src/run/records.py: a trained run's folder holds every artefact; the console stays short."""
import json

import pandas as pd
import pytest
import torch

from tests.helpers import TINY, run_py


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
    # every fold finished: the tuned decision, its offsets fitted on all OOF rows, its CV cross-fitted
    from src import decision

    probs, labels = oof[[f"p{k}" for k in range(18)]].to_numpy(), oof["label"].to_numpy()
    crossed = decision.cross_fitted(probs, labels, oof["fold"].to_numpy())
    assert cv["cv_f1_tuned"] == pytest.approx(macro_f1(labels, crossed))
    assert {"cv_f1_mask_tuned", "cv_f1_gender_tuned", "cv_f1_age_tuned", "cv_acc_tuned"} <= set(cv)
    saved = json.loads((run / "decision.json").read_text())
    assert saved["offsets"] == pytest.approx(decision.plugin_offsets(probs, labels).tolist(), abs=1e-4)
    assert saved["cv_f1_tuned"] == cv["cv_f1_tuned"] and saved["cv_f1_argmax"] == cv["cv_f1"]


@pytest.mark.slow
def test_console_shows_one_line_per_epoch_and_the_best_matrix_once_per_fold(dataset, tmp_path):
    proc = run_py("train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "quiet", *TINY,
                  "--pretrained_path", "package")
    log = (tmp_path / "quiet" / "train.log").read_text()
    assert proc.stderr.count("confusion matrix") == 2  # 2 folds, once each
    assert proc.stderr.count("confusion matrix of its out-of-fold rows") == 2
    assert proc.stderr.count(" val_f1 ") == 4  # 2 folds x 2 epochs: one line each
    assert log.count("confusion matrix (rows true, columns predicted)") == 4  # every epoch, in train.log only
    assert "out-of-fold rows" not in log
    warning = "--pretrained_path package has no effect with --pretrained false"
    assert warning in proc.stderr and warning in log
