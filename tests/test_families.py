"""Token, NHWC and hybrid backbones end to end: train.py then infer.py, a joint run ensembled with a per-task one,
DDP with a frozen head stage, and a size an architecture refuses."""
import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY, run_py

pytestmark = pytest.mark.slow  # trains for real

PROBS = [f"p{k}" for k in range(18)]


def train_and_infer(dataset, log_dir, name, *args):
    proc = run_py("train.py", "--data_dir", dataset, "--log_dir", log_dir, "--name", name, *TINY, "--fold", "0",
                  "--epochs", "1", *args)
    run_py("infer.py", "--data_dir", dataset, "--log_dir", log_dir, "--run", name)
    info = pd.read_csv(dataset / "eval" / "info.csv")
    submission = pd.read_csv(log_dir / name / "submission.csv")
    assert list(submission["ImageID"]) == list(info["ImageID"]) and submission["ans"].between(0, 17).all()
    return proc


def test_vit_joint_and_swin_per_task_runs_train_infer_and_ensemble(dataset, tmp_path):
    vit = train_and_infer(dataset, tmp_path, "vit", "--model", "vit_tiny_patch16_224", "--pooling", "gem")
    assert "gives no spatial map at 64x48: pooling=gem does not apply" in vit.stderr
    train_and_infer(dataset, tmp_path, "swin", "--model", "swin_tiny_patch4_window7_224", "--heads", "per_task",
                    "--mix_prob", "1", "--mix_mode", "halves")
    assert (tmp_path / "swin" / "fold0" / "oof.csv").is_file()
    run_py("infer.py", "--data_dir", dataset, "--log_dir", tmp_path, "--runs", "vit", "swin")
    singles = [pd.read_csv(tmp_path / run / "eval_probs.csv")[PROBS].to_numpy() for run in ("vit", "swin")]
    both = pd.read_csv(tmp_path / "ensemble_vit-swin" / "eval_probs.csv")[PROBS].to_numpy()
    assert np.allclose(singles[1].sum(1), 1, atol=1e-4)  # the per-task run's 18 classes are a distribution
    assert np.allclose(both, (singles[0] + singles[1]) / 2, atol=2e-5)


def test_ddp_trains_a_model_whose_head_stage_is_unused(dataset, tmp_path):
    # efficientvit_b0's timm head (conv + pooling) sits after the map we pool: frozen, so DDP's reducer
    # does not wait for gradients that never come.
    proc = run_py("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
                  "--data_dir", dataset, "--log_dir", tmp_path, "--name", "ddp", *TINY, "--model", "efficientvit_b0",
                  "--heads", "per_task", "--fold", "0", "--epochs", "1", "--dist_backend", "gloo",
                  env={"OMP_NUM_THREADS": "1"})
    assert "world 2" in proc.stderr and "unused and frozen" in proc.stderr
    assert (tmp_path / "ddp" / "fold0" / "oof.csv").is_file()


def test_a_size_the_architecture_refuses_stops_train_py_before_the_run_starts(dataset, tmp_path):
    proc = run_py("train.py", "--data_dir", dataset, "--log_dir", tmp_path, "--name", "bad", *TINY,
                  "--model", "coatnet_nano_rw_224", "--img_height", "130", "--img_width", "98", check=False)
    assert proc.returncode == 1
    assert "error: coatnet_nano_rw_224 cannot take 130x98 input" in proc.stderr and "128x96" in proc.stderr
    assert not (tmp_path / "bad").exists()  # no run folder, no cache
