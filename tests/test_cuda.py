"""The CUDA path, on a GPU only (`pytest -m cuda tests/test_cuda.py`; bench/gpu.sh runs it first): a training step
in bf16 and in fp16 with GradScaler, channels_last, pinned batches and non-blocking copies, whose checkpoint reloads
on the CPU; torch.compile of the training step, its speed-up printed; torchrun with NCCL and one rank through the
trainer (DDP included); a two-fold baseline.yaml run at a small size killed with SIGKILL and resumed; infer,
predict.py and export.py on CUDA against the CPU engine. Without a CUDA device every test is skipped with one
reason, which `pytest -rs` folds into one line (no test here carries a mark of its own, so that the lines fold).

Tolerances, CUDA against the CPU (fp32 PyTorch or onnxruntime) on the same checkpoints and images:
  FP32_TOL  any probability within 0.02 in fp32 (--amp none): cuDNN runs convolutions in TF32 (10-bit mantissa),
            and ArcFace scales cosines by 45 before the softmax
  BF16_TOL  any probability within 0.1 with --amp bf16 (an 8-bit mantissa), their mean within BF16_MEAN_TOL 0.01
  GAP       the decided classes are equal wherever the CPU's decided class leads its runner-up by more than 0.1
            in log-probability (with the run's decision offsets)
"""
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

from bench.throughput import Trainer, median_rate
from src.config.parsing import parse
from src.config.schema import ExportConfig
from src.data.tables import load_train
from src.engine import builders
from src.engine.fold import fold_datasets
from src.engine.forward import forward_views, probabilities, to_device
from src.engine.optim import build_optimizer
from src.engine.stopping import EarlyStopping
from src.labels import PROB_COLUMNS
from src.predict import onnx_graph
from src.predict.engines import open_engine
from src.predict.export import parity_batch
from src.predict.plans import plan_runs
from src.run.checkpoint import FoldState, is_finished, load_weights, rng_state
from src.run.rundir import RunDir
from src.run.saver import FoldObjects, FoldSaver
from tests.helpers import ROOT, TINY, applied_offsets, run_py, tiny_cfg

pytestmark = [pytest.mark.cuda, pytest.mark.slow,
              *([] if torch.cuda.is_available() else [pytest.mark.skip(reason="no CUDA device")])]

CUDA = torch.device("cuda")
FP32_TOL, BF16_TOL, BF16_MEAN_TOL, GAP = 0.02, 0.1, 0.01, 0.1
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}  # the same command on the CPU engine


def report(capsys, line: str):
    """A measured figure on the terminal even under capture: bench/gpu.sh keeps it in gpu.log."""
    with capsys.disabled():
        print(f"\n[cuda] {line}", flush=True)


def compare(cpu: pd.DataFrame, gpu: pd.DataFrame, classes: str, offsets, tol: float, mean_tol: float | None = None):
    """Assert CUDA's probabilities and decided classes (column `classes`) against the CPU's, rows in the same order
    (module docstring); returns the figures."""
    diff = np.abs(cpu[PROB_COLUMNS].to_numpy() - gpu[PROB_COLUMNS].to_numpy())
    scores = np.log(np.clip(cpu[PROB_COLUMNS].to_numpy(), 1e-12, None)) + (0 if offsets is None else offsets)
    top2 = np.sort(scores, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > GAP
    same = cpu[classes].to_numpy() == gpu[classes].to_numpy()
    figures = (f"max |dp| {diff.max():.2e}, mean {diff.mean():.2e}, classes equal on {same.sum()}/{len(same)} "
               f"({clear.sum()} clear of near-ties)")
    assert diff.max() <= tol, figures
    assert mean_tol is None or diff.mean() <= mean_tol, figures
    assert same[clear].all(), figures
    return figures


@pytest.fixture(params=["bf16", "fp16"])
def amp(request):
    return request.param


def test_a_train_step_in_amp_with_channels_last_and_pinned_batches_reloads_on_the_cpu(dataset, tmp_path, amp):
    cfg = tiny_cfg(data_dir=dataset, log_dir=tmp_path, amp=amp, channels_last="true", num_workers=2)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    images = builders.images(cfg, table["path"], builders.work_size(cfg), 0)
    train_ds, train_labels, _, _ = fold_datasets(cfg, table, images, 0)
    loader = builders.loader(train_ds, cfg, CUDA, cfg.batch_size, drop_last=True)
    model = builders.model(cfg).to(CUDA)
    optimizer = build_optimizer(cfg, model)
    step = builders.train_step(cfg, builders.forward_model(cfg, model), builders.criterion(cfg, train_labels).to(CUDA),
                               optimizer, CUDA)
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = []
    for x, y, _ in loader:
        assert x.is_pinned() and x.dtype == torch.uint8
        assert torch.equal(to_device(x, CUDA).cpu(), x)  # the non-blocking copy lands whole
        losses.append(step(x, y)[0])
    assert len(losses) >= 3 and all(torch.isfinite(loss) for loss in losses), losses
    assert step.scaler.is_enabled() == (amp == "fp16")
    if amp == "fp16":
        assert 0 < step.scaler.get_scale() < float("inf")
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "no weight changed"
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)

    # last.pt as the trainer writes it; on the CPU it gives the same weights and, in fp32, the same probabilities
    run = RunDir(tmp_path, "cuda")
    saver = FoldSaver(run, 0, FoldObjects(model=model, optimizer=optimizer, scheduler=None, step=step,
                                          stopper=EarlyStopping(cfg.early_stop_monitor)), oof_from="best_f1",
                      writes=True)
    saver.save_epoch(0, dict(lr=cfg.lr), None, last=False, rngs=[rng_state()])
    state = FoldState.load(run.last(0))
    cpu_model = builders.model(cfg, pretrained=False)
    cpu_model.load_state_dict(load_weights(run.last(0)))
    for key, value in model.state_dict().items():
        assert state.model[key].device.type == "cpu" and torch.equal(state.model[key], value.cpu()), key
    x = next(iter(loader))[0]
    model.eval()
    cpu_model.eval()
    gpu = probabilities(forward_views([model], x, CUDA, "flip", "none")).cpu().numpy()
    cpu = probabilities(forward_views([cpu_model], x, torch.device("cpu"), "flip", "none")).numpy()
    assert np.abs(gpu - cpu).max() <= FP32_TOL

    # and it resumes on CUDA with the grad scaler's state
    model2 = builders.model(cfg, pretrained=False).to(CUDA)
    optimizer2 = build_optimizer(cfg, model2)
    step2 = builders.train_step(cfg, model2, builders.criterion(cfg, train_labels).to(CUDA), optimizer2, CUDA)
    FoldSaver(run, 0, FoldObjects(model=model2, optimizer=optimizer2, scheduler=None, step=step2,
                                  stopper=EarlyStopping(cfg.early_stop_monitor)), oof_from="best_f1",
              writes=False).restore(state, 0, 1, len(loader), f"model {cfg.model}")
    if amp == "fp16":
        assert step2.scaler.get_scale() == step.scaler.get_scale()
    else:
        assert not step2.scaler.is_enabled()
    assert torch.isfinite(step2(x, next(iter(loader))[1])[0])


def test_torch_compile_of_the_training_step_trains_like_eager_and_prints_its_speedup(capsys):
    """The model the trainer compiles (builders.forward_model) inside bench.throughput's step (its linear head and
    CE loss); no dropout, so the first loss of the same weights on the same batch agrees with eager's to bf16's
    precision."""
    settings = dict(img_height=128, img_width=96, batch_size=64, amp="bf16", channels_last="true", msd_count=0,
                    head="linear", loss="ce")
    steps = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        steps[compiled] = Trainer(tiny_cfg(compile=str(compiled).lower(), **settings), CUDA)
    assert steps[True].train_step.model is not steps[True].model  # the compile wrapper, sharing the weights
    cfg = steps[False].cfg
    x = torch.randint(0, 256, (cfg.batch_size, 3, cfg.img_height, cfg.img_width), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0)).to(CUDA)
    y = torch.randint(0, 18, (cfg.batch_size,), generator=torch.Generator().manual_seed(0)).to(CUDA)
    eager_loss = steps[False].train_step(x, y)[0].item()
    t0 = time.perf_counter()
    compiled_loss = steps[True].train_step(x, y)[0].item()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    assert np.isfinite(compiled_loss) and compiled_loss == pytest.approx(eager_loss, rel=0.03, abs=1e-3)
    rates = {c: median_rate(lambda c=c: steps[c].step(x, y), 3, 3, 10) for c in (False, True)}
    assert all(r > 0 for r in rates.values())
    report(capsys, f"torch.compile: {cfg.model} {cfg.img_height}x{cfg.img_width} batch {cfg.batch_size} bf16 "
                   f"channels_last: first compiled step {compile_s:.1f} s; eager {rates[False]:.0f} img/s, compiled "
                   f"{rates[True]:.0f} img/s, speed-up {rates[True] / rates[False]:.2f}x")


def test_torchrun_with_nccl_and_one_rank_trains_through_ddp(dataset, tmp_path):
    proc = run_py("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py",
                  "--data_dir", dataset, "--log_dir", tmp_path, "--name", "nccl", *TINY, "--fold", "0",
                  "--epochs", "2", "--dist_backend", "nccl")
    assert "device cuda:0  world 1  backend nccl" in proc.stderr
    run = RunDir(tmp_path, "nccl")
    assert is_finished(run.last(0))
    cfg = tiny_cfg(data_dir=dataset)
    table = load_train(dataset, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed)
    oof = pd.read_csv(run.oof(0))
    assert sorted(oof["path"]) == sorted(table.loc[table["fold"] == 0, "path"])
    metrics = pd.read_csv(run.metrics)
    assert list(metrics["epoch"]) == [0, 1] and np.isfinite(metrics[["train_loss", "val_loss"]].to_numpy()).all()


BASELINE_SMALL = ["--config", ROOT / "experiments" / "baseline.yaml", "--pretrained", "false", "--img_height", "128",
                  "--img_width", "96", "--n_folds", "2", "--epochs", "4", "--batch_size", "16", "--num_workers", "2",
                  "--infer_batch_size", "32"]


@pytest.fixture(scope="module")
def baseline_run(dataset, tmp_path_factory):
    """(log_dir, name, fold 0's last.pt as the kill left it) of baseline.yaml (B3, ArcFace, focal, bf16, disk cache)
    at 128x96, two folds of 4 epochs, killed with SIGKILL once fold 0 saved an epoch, then resumed."""
    logs = tmp_path_factory.mktemp("cuda_logs")
    args = ["train.py", "--data_dir", dataset, "--log_dir", logs, "--name", "b3", *BASELINE_SMALL]
    with open(logs / "killed.stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        run = RunDir(logs, "b3")
        deadline = time.time() + 300
        while not run.last(0).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run.last(0).exists(), f"fold 0 saved no epoch:\n{(logs / 'killed.stderr').read_text()[-3000:]}"
    killed = FoldState.load(run.last(0))
    assert not (is_finished(run.last(0)) and is_finished(run.last(1))), "the kill came after the run ended"
    resumed = run_py(*args, "--resume")
    return logs, "b3", killed, resumed.stderr


def test_a_killed_baseline_run_on_cuda_resumes_to_the_end(baseline_run):
    logs, name, killed, stderr = baseline_run
    run = RunDir(logs, name)
    if not killed.finished:
        assert f"fold 0: resumed from {run.last(0)} after epoch {killed.epoch}" in stderr
    assert "device cuda" in stderr and is_finished(run.last(0)) and is_finished(run.last(1))
    metrics = pd.read_csv(run.metrics)
    assert sorted(zip(metrics["fold"], metrics["epoch"])) == [(k, e) for k in (0, 1) for e in range(4)]
    assert np.isfinite(metrics[["train_loss", "val_loss", "val_f1"]].to_numpy()).all()
    assert json.loads(run.cv.read_text())["oof_rows"] == len(pd.concat(pd.read_csv(run.oof(k)) for k in (0, 1)))


def test_infer_with_flip_tta_on_cuda_matches_the_cpu_engine(baseline_run, dataset, capsys):
    logs, name, _, _ = baseline_run
    out = {}
    for key, amp, env in (("cpu", "none", CPU_ONLY), ("fp32", "none", None), ("bf16", "bf16", None)):
        proc = run_py("infer.py", "--data_dir", dataset, "--log_dir", logs, "--run", name, "--tta", "flip",
                      "--amp", amp, "--group", "none", "--out", logs / f"{key}.csv", env=env)
        assert ("engine onnxruntime" if key == "cpu" else "engine torch") in proc.stderr
        out[key] = pd.read_csv(logs / f"{key}.probs.csv").merge(pd.read_csv(logs / f"{key}.csv"), on="ImageID")
    offsets = applied_offsets(logs / name)
    for key, tol, mean_tol in (("fp32", FP32_TOL, None), ("bf16", BF16_TOL, BF16_MEAN_TOL)):
        assert list(out[key]["ImageID"]) == list(out["cpu"]["ImageID"])
        figures = compare(out["cpu"], out[key], "ans", offsets, tol, mean_tol)
        report(capsys, f"infer, CUDA {key} against the CPU engine on {len(out[key])} eval images: {figures}")


def test_predict_and_export_on_cuda_agree_with_the_cpu(baseline_run, dataset, capsys):
    logs, name, _, _ = baseline_run
    photos = dataset / "eval" / "images"
    rows = {}
    for key, env in (("cpu", CPU_ONLY), ("cuda", None)):
        run_py("predict.py", "--log_dir", logs, "--run", name, photos, "--out", logs / f"predict_{key}.csv", env=env)
        rows[key] = pd.read_csv(logs / f"predict_{key}.csv").set_index("path")
    assert list(rows["cuda"].index) == list(rows["cpu"].index) and (rows["cuda"]["error"].isna()).all()
    figures = compare(rows["cpu"], rows["cuda"], "class", applied_offsets(logs / name), BF16_TOL, BF16_MEAN_TOL)
    report(capsys, f"predict.py, CUDA bf16 against the CPU engine on {len(rows['cpu'])} photos: {figures}")

    # export.py on this machine checks its own parity (onnxruntime against PyTorch); its graph then meets CUDA's
    run_py("export.py", "--data_dir", dataset, "--log_dir", logs, "--run", name, "--out", logs / "export")
    card = json.loads((logs / "export" / "model.json").read_text())
    assert card["parity"]["max_abs_diff"] <= card["parity"]["tolerance"] == 1e-4
    cfg = parse(["--data_dir", str(dataset), "--log_dir", str(logs), "--run", name], ExportConfig)
    plan = plan_runs(cfg)[0]
    images = parity_batch(dataset, cfg.parity_images, plan.cfg, logs, cfg.max_image_pixels)
    engine = open_engine("torch", plan.name, plan.run, plan.cfg, plan.checkpoints, plan.folds, plan.checkpoint,
                         "flip", "none", CUDA)
    sess = onnx_graph.session(str(logs / "export" / "model.onnx"))
    diff = np.abs(engine(images)[0] - onnx_graph.run_session(sess, images)[0]).max()
    assert diff <= FP32_TOL
    report(capsys, f"export.py: parity {card['parity']['max_abs_diff']:.1e} on the CPU; model.onnx against "
                   f"PyTorch on CUDA (fp32) {diff:.1e} on {len(images)} images")
