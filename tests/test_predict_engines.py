"""src/predict/engines.py: torch and onnxruntime give the same predictions; the exported graph is cached in the
run folder, reused, and rebuilt when the checkpoints change."""
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import infer
from src.labels import PROB_COLUMNS
from src.predict.engines import resolve
from src.run.checkpoint import read, save_best
from src.run.rundir import RunDir
from tests.helpers import cli, read_only


def test_auto_is_onnxruntime_on_cpu_and_torch_on_cuda():
    assert resolve("auto", torch.device("cpu")) == "onnxruntime"
    assert resolve("auto", torch.device("cuda")) == "torch"
    assert resolve("torch", torch.device("cpu")) == "torch"
    assert resolve("onnxruntime", torch.device("cuda")) == "onnxruntime"


def infer_with(engine, dataset, log_dir, name, out, capsys, *extra):
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--engine", engine,
                    "--out", out, "--num_workers", "0", *extra, capsys=capsys)
    assert code == 0, err
    return pd.read_csv(out), pd.read_csv(str(out).replace(".csv", ".probs.csv"))[PROB_COLUMNS].to_numpy(), err


@pytest.mark.slow
def test_both_engines_give_the_same_submission(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    torch_sub, torch_probs, err = infer_with("torch", dataset, log_dir, name, tmp_path / "t.csv", capsys)
    assert "engine torch" in err and not (log_dir / name / "onnx").exists()
    ort_sub, ort_probs, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "o.csv", capsys)
    assert "engine onnxruntime" in err and "parity with PyTorch" in err
    assert ort_sub.equals(torch_sub)
    assert np.abs(ort_probs - torch_probs).max() < 1e-5


@pytest.mark.slow
def test_the_export_is_cached_reused_and_rebuilt_when_a_checkpoint_changes(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    _, first, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "a.csv", capsys)
    (cached,) = run.onnx_exports("best_f1", "flip")
    assert "exported 2 fold(s)" in err
    _, again, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "b.csv", capsys)
    assert f"onnxruntime on {cached}" in err and "exported" not in err and np.array_equal(first, again)

    state = read(run.checkpoint(0, "best_f1"), "")  # fold 0 retrained: other weights in the same file
    weights = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state["model"].items()}
    save_best(run.checkpoint(0, "best_f1"), weights, state["epoch"], state["metrics"], state["monitor"])
    _, rebuilt, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "c.csv", capsys)
    (fresh,) = run.onnx_exports("best_f1", "flip")  # the stale export is gone
    assert fresh != cached and "exported 2 fold(s)" in err
    _, by_torch, _ = infer_with("torch", dataset, log_dir, name, tmp_path / "d.csv", capsys)
    assert np.abs(rebuilt - by_torch).max() < 1e-5 and np.abs(rebuilt - first).max() > 1e-3
    _, no_tta, _ = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "e.csv", capsys, "--tta", "none")
    assert len(run.onnx_exports("best_f1", "none")) == 1 and run.onnx_exports("best_f1", "flip") == [fresh]


@pytest.mark.slow
def test_a_damaged_or_changed_cached_export_is_exported_again(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    _, first, _ = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "a.csv", capsys)
    (cached,) = run.onnx_exports("best_f1", "flip")
    cached.write_bytes(cached.read_bytes()[:1000])  # cut short, as by a disk fault
    _, again, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "b.csv", capsys)
    assert f"the cached export {cached} is unreadable" in err and "exported 2 fold(s)" in err
    assert run.onnx_exports("best_f1", "flip") == [cached] and np.array_equal(first, again)
    infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "c.csv", capsys, "--tta", "none")
    (other,) = run.onnx_exports("best_f1", "none")
    cached.write_bytes(other.read_bytes())  # a valid graph, but another one: only its digest tells
    _, third, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "d.csv", capsys)
    assert f"the cached export {cached} does not match the digest" in err and "exported 2 fold(s)" in err
    assert np.array_equal(first, third)


@pytest.mark.slow
def test_a_read_only_run_folder_keeps_the_graph_in_memory(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    shutil.rmtree(log_dir / name / "onnx", ignore_errors=True)
    with read_only(log_dir / name):
        _, probs, err = infer_with("onnxruntime", dataset, log_dir, name, tmp_path / "a.csv", capsys)
    assert "is not cached" in err and "used from memory" in err and not (log_dir / name / "onnx").exists()
    _, by_torch, _ = infer_with("torch", dataset, log_dir, name, tmp_path / "b.csv", capsys)
    assert np.abs(probs - by_torch).max() < 1e-5
