"""Distillation (--teacher) and --fold full: the KL term against a hand computation (temperature, alpha, per-task
heads), alpha 0 equal to the plain loss, soft targets out of fold (against the teacher's folds), teachers that do
not match refused in one line, the cache of soft targets (reused, other teachers refused), a killed student resumed
as if never killed, and a full run used by infer, predict, export and the page."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import train
from src.config.schema import TrainConfig
from src.engine import builders
from src.engine.step import DistillTerm, TrainStep
from src.labels import PROB_COLUMNS, TASK_SIZES
from src.model.losses import Criterion, distill_kl, teacher_targets
from src.run.rundir import RunDir
from tests.helpers import ROOT, TINY, cli, killed_once_saved, one_line, run_py, tiny_cfg

STUDENT = ["--fold", "full", "--epochs", "1"]


def softmax(z, axis=1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def hand_kl(student_logp, teacher_p, t):
    """T^2 x mean over rows of sum q_T log(q_T / s_T), with q_T = softmax(log q / T), s_T = softmax(log s / T)."""
    q = softmax(np.log(teacher_p) / t)
    s = softmax(student_logp / t)
    return t * t * np.mean(np.sum(q * (np.log(q) - np.log(s)), axis=1))


def test_the_kl_term_matches_a_hand_computation_joint_and_per_task():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 18)) * 3
    teacher = softmax(rng.normal(size=(5, 18)) * 2)
    t = 2.5
    joint = distill_kl(torch.tensor(logits), teacher_targets(torch.tensor(teacher), t, per_task=False), t)
    assert float(joint) == pytest.approx(hand_kl(logits, teacher, t), rel=1e-5)

    # per task: each task's marginal on both sides, weighted
    weights = (1.0, 0.5, 2.0)
    s = softmax(logits).reshape(5, *TASK_SIZES)
    q = teacher.reshape(5, *TASK_SIZES)
    axes = [(2, 3), (1, 3), (1, 2)]
    expected = sum(w * hand_kl(np.log(s.sum(a)), q.sum(a), t) for w, a in zip(weights, axes))
    per_task = distill_kl(torch.tensor(logits), teacher_targets(torch.tensor(teacher), t, per_task=True), t, weights)
    assert float(per_task) == pytest.approx(expected, rel=1e-5)
    # a student that says what the teacher says owes nothing
    same = distill_kl(torch.tensor(np.log(teacher)), teacher_targets(torch.tensor(teacher), t, per_task=False), t)
    assert abs(float(same)) < 1e-6


def one_step(alpha, heads="per_task", soft=None, unlabeled=None, seed=0):
    """(loss, supervised, KL) of one TrainStep on a fixed batch from fixed weights."""
    cfg = tiny_cfg(heads=heads, msd_count=0)
    torch.manual_seed(seed)
    model = builders.model(cfg)
    x = torch.randint(0, 255, (4, 3, 64, 48), dtype=torch.uint8)
    y = torch.tensor([0, 5, 12, 17])
    criterion = Criterion(heads, cfg.head, cfg.loss, train_labels=y.numpy(), class_weighted=False)
    term = None if alpha is None else DistillTerm(alpha, 2.0, heads == "per_task")
    step = TrainStep(model, criterion, torch.optim.SGD(model.parameters(), lr=0.0), torch.device("cpu"), amp="none",
                     distill=term)
    loss, sup, kl, _ = step(x, y, unlabeled, soft)
    return float(loss), float(sup), float(kl)


def test_alpha_zero_is_the_plain_loss_and_alpha_mixes_the_two_terms():
    soft = torch.tensor(softmax(np.random.default_rng(1).normal(size=(4, 18))), dtype=torch.float32)
    plain = one_step(None)[0]
    assert one_step(0.0, soft=soft)[0] == plain  # exactly
    loss, sup, kl = one_step(0.3, soft=soft)
    assert sup == plain and kl > 0
    assert loss == pytest.approx(0.7 * sup + 0.3 * kl, rel=1e-6)
    # unlabelled photos take the KL term alone: their rows add to it, never to the labels' loss
    unl = torch.randint(0, 255, (2, 3, 64, 48), dtype=torch.uint8)
    both = torch.cat([soft, soft[:2]])
    loss_u, _, kl_u = one_step(1.0, soft=both, unlabeled=unl)
    assert loss_u == pytest.approx(kl_u, rel=1e-6) and kl_u > 0
    assert kl_u != pytest.approx(one_step(1.0, soft=soft)[2], rel=1e-3)  # their rows are in the KL


def student(dataset, logs, name, *extra, teacher="tiny"):
    return ["--data_dir", dataset, "--log_dir", logs, "--name", name, *TINY, "--teacher", teacher, *STUDENT, *extra]


@pytest.mark.slow
def test_soft_targets_are_out_of_fold_and_cached_with_their_teachers(own_run, dataset, capsys):
    logs, name = own_run
    assert cli(train.main, *student(dataset, logs, "s", "--distill_unlabeled_share", "0.25"), capsys=capsys)[0] == 0
    run, teacher = RunDir(logs, "s"), RunDir(logs, name)
    soft = pd.read_csv(run.soft_targets)
    oof = pd.concat(pd.read_csv(teacher.oof(k)) for k in (0, 1))
    oof["image"] = [os.path.relpath(p, dataset) for p in oof["path"]]
    folds = pd.read_csv(teacher.folds_csv, dtype={"person_id": str}).set_index("person_id")["fold"]
    train_rows = soft[soft["source"] == "oof"].merge(oof, on="image", suffixes=("", "_teacher"))
    assert len(train_rows) == len(oof) == 168
    # each photo's target is the row of the teacher's fold that validated it: the person's own fold, never trained on
    person = train_rows["image"].str.split("/").str[2].str.split("_").str[0]
    assert (train_rows["fold"].to_numpy() == folds.reindex(person).to_numpy()).all()
    for c in PROB_COLUMNS:
        assert np.allclose(train_rows[c], train_rows[f"{c}_teacher"], rtol=1e-4, atol=1e-7)
    unl = soft[soft["source"] == "ensemble"]
    assert len(unl) == 28 and np.allclose(unl[PROB_COLUMNS].sum(axis=1), 1, atol=1e-4)
    identity = json.loads(run.soft_source.read_text())
    assert set(identity["teachers"]["tiny"]["oof"]) == {"0", "1"}
    assert json.loads(run.decision.read_text())["from_teachers"] == ["tiny"]

    # a resume reuses them; a teacher changed since is refused, never mixed
    stamp = run.soft_targets.stat().st_mtime_ns
    code, err = cli(train.main, *student(dataset, logs, "s", "--distill_unlabeled_share", "0.25", "--resume"),
                    capsys=capsys)
    assert code == 0 and run.soft_targets.stat().st_mtime_ns == stamp
    teacher.oof(0).write_text(teacher.oof(0).read_text() + "\n")  # the same rows: only the digest can tell
    shutil.rmtree(run.fold(0))
    code, err = cli(train.main, *student(dataset, logs, "s", "--distill_unlabeled_share", "0.25", "--resume"),
                    capsys=capsys)
    assert code != 0 and "other teachers" in one_line(err)


@pytest.mark.slow
def test_teachers_that_do_not_match_are_refused_in_one_line(own_run, dataset, tmp_path, capsys):
    logs, name = own_run
    cases = [(["--age_filter", "58"], "classes differ"),
             (["--heads", "per_task"], "heads differ")]
    for extra, said in cases:
        code, err = cli(train.main, *student(dataset, logs, "s", *extra), capsys=capsys)
        assert code == 2 and said in one_line(err), err
    # a teacher of other photos: the same run read against other data
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    info = pd.read_csv(other / "train" / "train.csv", dtype=str)
    shutil.rmtree(other / "train" / "images" / info["path"][0])
    info.iloc[1:].to_csv(other / "train" / "train.csv", index=False)
    code, err = cli(train.main, *student(other, logs, "s"), capsys=capsys)
    assert code == 2 and "not the student's" in one_line(err), err
    # a row of the teacher's oof.csv that its person's fold did not make: not out of fold
    oof = RunDir(logs, name).oof(0)
    kept = oof.read_text()
    rows = pd.read_csv(oof)
    rows.loc[0, "fold"] = 1
    rows.to_csv(oof, index=False)
    code, err = cli(train.main, *student(dataset, logs, "s"), capsys=capsys)
    assert code == 2 and "not out of fold" in one_line(err), err
    oof.write_text(kept)
    # an unfinished teacher: one fold's last.pt gone
    RunDir(logs, name).last(1).unlink()
    code, err = cli(train.main, *student(dataset, logs, "s"), capsys=capsys)
    assert code == 2 and "not finished" in one_line(err), err
    code, err = cli(train.main, *student(dataset, logs, "s", teacher="nobody"), capsys=capsys)
    assert code != 0 and "nobody" in one_line(err)
    assert not (logs / "s").exists()  # refused before the run name was claimed
    for extra, said in [(["--fold", "all"], "add --fold full"), (["--name", name], "also a teacher"),
                        (["--uda", "true"], "use one")]:
        code, err = cli(train.main, *student(dataset, logs, "s"), *extra, capsys=capsys)
        assert code == 2 and said in one_line(err), err
    code, err = cli(train.main, "--data_dir", dataset, "--log_dir", logs, "--name", "x", *TINY, "--epochs", "auto",
                    capsys=capsys)
    assert code == 2 and "--epochs auto" in one_line(err)
    code, err = cli(train.main, *student(dataset, logs, "s"), "--epochs", "0", capsys=capsys)
    assert code == 2 and ">= 1 or auto" in one_line(err)  # only the word means auto


@pytest.mark.slow
def test_a_killed_student_resumes_as_if_never_killed_and_epochs_auto_follows_the_teacher(own_run, dataset):
    """Tolerance as the trainer's own resume test: 1e-5 on the losses (deterministic, CPU, same threads)."""
    logs, _ = own_run
    args = [*map(str, student(dataset, logs, "straight", "--distill_unlabeled_share", "0.2")), "--epochs", "auto",
            "--deterministic", "true"]
    out = run_py("train.py", *args)
    assert "--epochs auto: 2" in out.stderr + out.stdout  # the teacher's two folds each kept epoch 1 (of 2)
    last = logs / "killed" / "fold0" / "last.pt"
    killed_once_saved(["train.py", *args, "--name", "killed"], last)
    assert torch.load(last, weights_only=True)["epoch"] == 0, "the kill should land during epoch 1"
    run_py("train.py", *args, "--name", "killed", "--resume")
    a = pd.read_csv(logs / "straight" / "metrics.csv").set_index("epoch")
    b = pd.read_csv(logs / "killed" / "metrics.csv").set_index("epoch")
    assert list(b.index) == [0, 1] and b["val_f1"].isna().all()  # validated nothing
    for col in ("train_loss", "train_sup_loss", "train_kd_loss"):
        assert a.loc[1, col] == pytest.approx(b.loc[1, col], abs=1e-5), col
    assert torch.load(last, weights_only=True)["finished"]
    assert not list((logs / "killed" / "fold0").glob("best_*.pt")) and not (logs / "killed" / "cv.json").exists()


@pytest.mark.slow
def test_a_full_run_is_used_by_infer_predict_export_and_the_page(own_run, dataset, tmp_path):
    from bench.page import ask, serve

    logs, _ = own_run
    env = {"PYTHON": sys.executable, "DATA_DIR": str(dataset), "LOG_DIR": str(logs), "RUN": "tiny", "NAME": "s"}
    # distill.yaml's recipe (cpu15's) at the tiny size, with the tiny teacher's classes and heads
    proc = subprocess.run(["bash", "experiments/distill.sh", *TINY, "--epochs", "1", "--heads", "joint",
                           "--age_filter", "59"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunDir(logs, "s")
    assert "teacher:\n- tiny" in run.config.read_text() and "fold: full" in run.config.read_text()
    out = run_py("infer.py", "--data_dir", dataset, "--log_dir", logs, "--run", "s")
    assert "fold(s) 0 used (last)" in out.stderr and "tuned: offsets of" in out.stderr
    submission = pd.read_csv(run.submission)
    assert len(submission) == 28 and submission["ans"].between(0, 17).all()
    photos = sorted((dataset / "eval" / "images").iterdir())[:2]
    run_py("predict.py", "--log_dir", logs, "--run", "s", "--out", tmp_path / "p.csv", *photos)
    by_predict = pd.read_csv(tmp_path / "p.csv").set_index("path")["class"]
    probs = pd.read_csv(run.root / "eval_probs.csv")
    assert by_predict[str(photos[0])] == submission.set_index("ImageID")["ans"][photos[0].name]
    assert len(probs) == 28
    run_py("export.py", "--log_dir", logs, "--run", "s", "--out", tmp_path / "exp")
    assert (tmp_path / "exp" / "model.onnx").is_file()
    assert json.loads((tmp_path / "exp" / "model.json").read_text())["runs"][0]["folds"] == [0]
    proc, url = serve(logs, "s", tmp_path / "app.log")
    try:
        answer, _ = ask(url, photos[0])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"**{photos[0].name}**: class {by_predict[str(photos[0])]}" in answer
