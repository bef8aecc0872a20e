"""src/engine/dist.py: a two-process gloo run matches single-process evaluation."""
import numpy as np
import pandas as pd
import pytest
import torch

from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.loaders import make_loader
from src.data.tables import load_train
from src.engine import builders
from src.engine.builders import eval_transform, work_size
from src.engine.forward import predict_loader, probabilities
from src.metrics import evaluate
from tests.helpers import TINY, run_py, tiny_cfg

pytestmark = pytest.mark.slow  # trains or benchmarks for real

PROBS = [f"p{k}" for k in range(18)]


def test_two_process_gloo_run_covers_each_validation_image_once(dataset, tmp_path):
    proc = run_py("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
                  "--data_dir", dataset, "--log_dir", tmp_path, "--name", "ddp", *TINY, "--fold", "0",
                  "--epochs", "1", "--dist_backend", "gloo", env={"OMP_NUM_THREADS": "1"})
    assert "world 2" in proc.stderr
    cfg = tiny_cfg(data_dir=dataset)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    val = table[table["fold"] == 0]
    oof = pd.read_csv(tmp_path / "ddp" / "fold0" / "oof.csv")
    assert len(oof) == len(val) and oof["path"].is_unique and set(oof["path"]) == set(val["path"])

    # single-process evaluation of the same checkpoint gives the same probabilities and metrics
    model = builders.model(cfg)
    model.load_state_dict(torch.load(tmp_path / "ddp" / "fold0" / "best_f1.pt", weights_only=True)["model"])
    model.eval()
    ds = FaceDataset(FileImages(oof["path"], work_size(cfg)), None, eval_transform(cfg))
    _, logits = predict_loader([model], make_loader(ds, torch.device("cpu"), 16, 0), torch.device("cpu"),
                                 "none", "none")
    probs = probabilities(logits).numpy()
    assert np.allclose(probs, oof[PROBS].to_numpy(), atol=1e-4)
    single = evaluate(oof["label"], probs)
    metrics = pd.read_csv(tmp_path / "ddp" / "metrics.csv").iloc[0]
    assert metrics["val_f1"] == pytest.approx(single["f1"], abs=1e-6)
    assert metrics["val_acc"] == pytest.approx(single["acc"], abs=1e-6)
