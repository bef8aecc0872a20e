"""src/predict/infer.py: submissions, ensembles, and inputs checked before any model loads."""
import shutil

import numpy as np
import pandas as pd
import pytest

from src.config.schema import InferConfig
from src.errors import DataError
from src.labels import PROB_COLUMNS as PROBS
from src.predict import infer as predict
from tests.helpers import TINY, run_py, tiny_cfg


def infer_cfg(dataset, log_dir, **kw):
    return tiny_cfg(InferConfig, data_dir=dataset, log_dir=log_dir, **kw)


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
