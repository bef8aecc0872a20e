"""src/predict/pseudo.py: pseudo labels, their threshold and the rounds of pseudo_train."""
import os
import subprocess
import sys

import pandas as pd
import pytest

import pseudo_train
from src.config.schema import PseudoConfig
from src.data.images import FileImages
from src.data.tables import load_pseudo, load_train
from src.engine.fold import fold_datasets
from src.predict import infer as predict
from src.run.rundir import RunDir
from tests.helpers import ROOT, TINY, cli, one_line, run_py, tiny_cfg


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
    train_ds, train_labels, val_ds, val_rows = fold_datasets(
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
    taught = (logs / "round2" / "pseudo_labels.yaml").read_text()
    assert f"run: {name}" in taught and f"checkpoints:\n  {name}: best_f1" in taught  # who taught it, which weights

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
def test_pseudo_round_checks_before_it_claims_and_never_overwrites_its_teacher(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    args = ["--data_dir", dataset, "--log_dir", logs, *TINY, "--run", name]
    code, err = cli(pseudo_train.main, *args, "--name", name, "--overwrite", capsys=capsys)
    assert code == 2 and "is also a teacher run" in one_line(err) and RunDir(logs, name).exists
    RunDir(logs, "student").claim(False, False)
    RunDir(logs, "student").config.write_text("lr: 0.001\n")
    code, err = cli(pseudo_train.main, *args[2:], "--data_dir", tmp_path / "typo", "--name", "student", "--overwrite",
                    capsys=capsys)
    assert code == 1 and "data_dir not found" in one_line(err) and RunDir(logs, "student").config.is_file()
