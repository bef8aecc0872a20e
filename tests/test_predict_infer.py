"""src/predict/infer.py: submissions, ensembles, and inputs checked before any model loads."""
import errno
import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import infer
from src.config.schema import InferConfig
from src.decision import decide
from src.people import decide_people
from src.errors import CheckpointError, DataError, RunNotFound
from src.labels import PROB_COLUMNS as PROBS
from src.predict import infer as predict
from src.run.rundir import RunDir, prediction_files
from tests.helpers import ROOT, TINY, applied_offsets, cli, copy_data, one_line, read_only, run_py, tiny_cfg


def infer_cfg(dataset, log_dir, **kw):
    return tiny_cfg(InferConfig, data_dir=dataset, log_dir=log_dir, **kw)


@pytest.mark.slow
def test_submission_has_the_rows_and_order_of_info(trained_run, dataset, tmp_path):
    log_dir, name = trained_run
    out = predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "sub.csv"))
    sub, info = pd.read_csv(out), pd.read_csv(dataset / "eval" / "info.csv")
    assert list(sub.columns) == ["ImageID", "ans"] and list(sub["ImageID"]) == list(info["ImageID"])
    assert sub["ans"].dtype.kind == "i" and sub["ans"].between(0, 17).all()
    probs = pd.read_csv(tmp_path / "sub.probs.csv")  # named after --out
    assert list(probs["ImageID"]) == list(info["ImageID"])
    assert np.allclose(probs[PROBS].sum(axis=1), 1, atol=1e-4)
    assert (decide(probs[PROBS].to_numpy(), applied_offsets(log_dir / name)) == sub["ans"]).all()
    assert (tmp_path / "sub.preview.png").stat().st_size > 10_000 and (tmp_path / "sub.yaml").is_file()


@pytest.mark.slow
def test_the_decision_is_the_runs_tuned_offsets_or_argmax(own_run, dataset, tmp_path):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    saved = json.loads(run.decision.read_text())  # written by train.py: every fold finished
    assert len(saved["offsets"]) == 18 and {"cv_f1_tuned", "cv_f1_argmax", "oof_rows"} <= set(saved)
    offsets = [-7.0] * 18
    offsets[5] = 7.0  # the widest offsets accepted: class 5 wins wherever log p5 is within 14 of the top class
    run.decision.write_text(json.dumps(dict(saved, offsets=offsets)))
    sub = pd.read_csv(predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "t.csv")))
    log_p = np.log(np.clip(pd.read_csv(tmp_path / "t.probs.csv")[PROBS].to_numpy(), 1e-12, None))
    assert (sub["ans"] == (log_p + offsets).argmax(1)).all() and (sub["ans"] == 5).mean() > 0.5
    record = yaml.safe_load((tmp_path / "t.yaml").read_text())["decision"]
    assert record["rule"] == "tuned" and record["offsets"][5] == 7.0 and str(run.decision) in record["how"]
    plain = pd.read_csv(predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "a.csv", decision="argmax")))
    probs = pd.read_csv(tmp_path / "a.probs.csv")[PROBS].to_numpy()
    assert (plain["ans"] == probs.argmax(1)).all() and not (plain["ans"] == 5).all()
    run.decision.write_text(json.dumps(dict(saved, offsets=[0.0] * 17)))
    with pytest.raises(CheckpointError, match="decision.json: expected 18 finite 'offsets'"):
        predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "x.csv"))
    run.decision.write_text(json.dumps(dict(saved, offsets=[0.0] * 17 + [1e308])))  # would decide every row alike
    with pytest.raises(CheckpointError, match=r"decision.json: expected 18 finite 'offsets' within \+-7"):
        predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "x.csv"))
    run.decision.unlink()
    run.decision.mkdir()  # not silently taken for a missing file, which would mean argmax
    with pytest.raises(CheckpointError, match="decision.json: expected 18"):
        predict.infer(infer_cfg(dataset, log_dir, run=name, out=tmp_path / "x.csv"))


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

    monkeypatch.setattr(predict, "run_engine", no_loading)
    data = tmp_path / "d"
    shutil.copytree(dataset, data)
    victim = next((data / "eval" / "images").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match=f"image .*{victim.name} not found"):
        predict.infer(infer_cfg(data, log_dir, run=name))
    with pytest.raises(RunNotFound, match="run .*nope: not found"):
        predict.infer(infer_cfg(dataset, log_dir, run="nope"))
    logs = tmp_path / "logs"
    shutil.copytree(log_dir / name, logs / name)
    (logs / name / "fold1" / "best_acc.pt").unlink()
    with pytest.raises(RunNotFound, match="fold1/best_acc.pt"):
        predict.infer(infer_cfg(dataset, logs, run=name, checkpoint="best_acc"))
    proc = run_py("infer.py", "--data_dir", dataset, "--log_dir", logs, "--run", name, "--checkpoint", "best_acc",
                  check=False)
    assert proc.returncode == 1 and "best_acc.pt" in proc.stderr


@pytest.mark.slow
def test_out_never_touches_the_data_a_folder_or_another_run(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    data = copy_data(dataset, tmp_path)
    train_csv = data / "train" / "train.csv"
    before = hashlib.md5(train_csv.read_bytes()).hexdigest()
    base = ("--data_dir", data, "--log_dir", log_dir, "--run", name)
    code, err = cli(infer.main, *base, "--out", train_csv, capsys=capsys)
    assert code == 2 and "would lie inside data_dir" in one_line(err)
    assert hashlib.md5(train_csv.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (data / "train").iterdir()) == ["images", "train.csv"]
    code, err = cli(infer.main, *base, "--out", tmp_path, capsys=capsys)
    assert code == 2 and "is a folder" in one_line(err)
    shutil.copytree(log_dir / name, log_dir / "other")
    code, err = cli(infer.main, *base, "--out", log_dir / "other" / "submission.csv", capsys=capsys)
    assert code == 2 and "folder of run other, which is not predicting" in one_line(err)
    code, err = cli(infer.main, *base, "--out", log_dir / name / "config.csv", capsys=capsys)  # config.yaml beside
    assert code == 2 and "config.yaml is the settings of run tiny, an input of this prediction" in one_line(err)
    code, err = cli(infer.main, *base, "--out", log_dir / name / "folds.csv", capsys=capsys)
    assert code == 2 and "would replace run tiny's own folds.csv" in one_line(err)
    code, err = cli(infer.main, *base, "--out", tmp_path / "mine.csv", capsys=capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("mine*")) == ["mine.csv", "mine.preview.png", "mine.probs.csv",
                                                             "mine.yaml"]


@pytest.mark.slow
def test_infer_names_the_folds_it_used_and_those_still_training(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    shutil.rmtree(run.fold(1))  # fold 1 is being trained again by a live process that holds its lock
    hold = ("import sys, time\nfrom src.run.rundir import RunDir\n"
            "with RunDir(sys.argv[1], sys.argv[2]).fold_lock(1):\n    print('held', flush=True)\n    time.sleep(120)\n")
    trainer = subprocess.Popen([sys.executable, "-c", hold, str(log_dir), name], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert trainer.stdout.readline().strip() == "held"
        code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, capsys=capsys)
        assert code == 0
        assert f"run {name}: fold(s) 0 used (best_f1); fold 1 is still being trained by process {trainer.pid}" in err
        saved = yaml.safe_load(prediction_files(run.submission)["settings"].read_text())
        assert saved["checkpoint"] == "auto" and saved["folds"] == {  # auto: the run's oof_from epoch
            name: {"used": [0], "checkpoint": "best_f1", "still_training": {1: f"process {trainer.pid}"}}}
        shutil.rmtree(run.fold(0))
        code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, capsys=capsys)
        assert code == 1 and f"no finished fold yet; fold 1 is being trained by process {trainer.pid}" in one_line(err)
        assert "--resume" not in err
    finally:
        trainer.kill()
        trainer.wait()


@pytest.mark.slow
def test_infer_completes_a_killed_infer_and_writes_all_files_or_none(own_run, dataset, tmp_path, capsys, monkeypatch):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    dead = 2**22 + 12345  # above pid_max: no process has it
    (run.root / f".submission.csv.{dead}.tmp").write_bytes(b"")  # a kill -9 mid-write
    code, _ = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, capsys=capsys)
    assert code == 0 and not list(run.root.glob("*.tmp"))
    files = prediction_files(run.submission)
    old = {k: p.read_bytes() for k, p in files.items()}

    def fail_on_the_preview(fig, tmp, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", fail_on_the_preview)
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--tta", "none",
                    capsys=capsys)
    assert code == 1 and "cannot write" in one_line(err)
    assert {k: p.read_bytes() for k, p in files.items()} == old  # all old: nothing of the failed infer was moved
    assert not list(run.root.glob(".*.tmp")) and not list(run.root.glob(".*.moves"))


@pytest.mark.slow
def test_infer_into_a_read_only_run_fails_in_one_line_before_predicting(own_run, dataset, capsys, monkeypatch):
    log_dir, name = own_run
    with read_only(log_dir / name):
        monkeypatch.setattr(predict, "predict_runs", lambda *a: pytest.fail("predicted before the write check"))
        code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, capsys=capsys)
    assert code == 1 and "cannot write into" in one_line(err) and "Read-only file system" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_config_edited_to_another_network_is_one_line_naming_both_files(own_run, dataset, tmp_path, capsys):
    import export as export_py
    import predict as predict_py

    log_dir, name = own_run
    run = RunDir(log_dir, name)
    run.config.write_text(run.config.read_text().replace("model: test_efficientnet", "model: resnet18"))
    for main, args in ((infer.main, ["--data_dir", dataset, "--out", tmp_path / "s.csv"]),
                       (predict_py.main, [dataset / "eval" / "images"]),
                       (export_py.main, ["--out", tmp_path / "ship"])):
        code, err = cli(main, "--log_dir", log_dir, "--run", name, "--engine" if main is not export_py.main else
                        "--tta", "torch" if main is not export_py.main else "flip", *args, capsys=capsys)
        line = one_line(err)
        assert code == 1 and "does not match" in line and str(run.config) in line and "model resnet18" in line
        assert "Traceback" not in err


@pytest.mark.slow
def test_infer_groups_the_eval_people_or_says_why_not(own_run, dataset, tmp_path, capsys):
    log_dir, name = own_run
    run = RunDir(log_dir, name)
    with np.load(run.people) as saved:  # written by train.py with cv.json: the person metric of the training photos
        assert saved["matrix"].ndim == 2 and len(saved["paths"]) == len(saved["embedded"]) == 168
    cv = json.loads(run.cv.read_text())
    assert {"cv_f1_grouped", "cv_f1_grouped_tuned", "grouping"} <= set(cv)
    assert len(json.loads(run.decision.read_text())["person_offsets"]) == 18

    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--group", "people",
                    "--out", tmp_path / "p.csv", capsys=capsys)
    probs = pd.read_csv(tmp_path / "p.probs.csv")
    record = yaml.safe_load((tmp_path / "p.yaml").read_text())["grouping"]
    assert code == 0 and "group people: " in err and record["fallback"] is None and "group" in probs
    said = float(re.search(r"left single \(decided alone\), in ([0-9.]+) s", err).group(1))
    assert record["seconds"] > 0 and abs(said - record["seconds"]) <= 0.06  # 0.1 s shown, 0.01 s recorded
    assert record["formed"] * 7 + record["single"] == 28 == (probs["group"] >= 0).sum() + record["single"]
    saved = json.loads(run.decision.read_text())
    by_person = decide_people(probs[PROBS].to_numpy(), probs["group"].to_numpy(), np.array(saved["person_offsets"]),
                              np.array(saved["offsets"]))
    assert (pd.read_csv(tmp_path / "p.csv")["ans"].to_numpy() == by_person).all()

    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--out",
                    tmp_path / "n.csv", capsys=capsys)  # the default
    assert code == 0 and "group people: none (--group none)" in err
    assert (pd.read_csv(tmp_path / "n.probs.csv")["group"] == -1).all()

    short = copy_data(dataset, tmp_path)
    info = pd.read_csv(short / "eval" / "info.csv")
    info.iloc[:27].to_csv(short / "eval" / "info.csv", index=False)  # one person is missing a photo
    code, err = cli(infer.main, "--data_dir", short, "--log_dir", log_dir, "--run", name, "--group", "people",
                    "--out", tmp_path / "s.csv", capsys=capsys)
    assert code == 0 and "group people: none (27 photos are not a multiple of 7" in err

    run.people.unlink()  # a run trained before grouping existed
    code, err = cli(infer.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--group", "people",
                    "--out", tmp_path / "o.csv", capsys=capsys)
    assert code == 0 and f"run {name} has no people.npz" in err


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["nested decision", "offset out of range", "checkpoint", "people.npz"])
def test_every_input_of_the_run_is_checked_before_anything_is_exported_or_predicted(own_run, dataset, capsys,
                                                                                    monkeypatch, damage):
    """decision.json, the checkpoints and people.npz are read before any export or prediction: a bad one is the
    first and only line (people.npz: a warning, then the photos are decided alone)."""
    from src.predict import engines

    log_dir, name = own_run
    run = RunDir(log_dir, name)
    saved = json.loads(run.decision.read_text())
    if damage == "nested decision":
        run.decision.write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "offset out of range":
        run.decision.write_text(json.dumps(dict(saved, offsets=[0.0] * 17 + [8.0])))
    elif damage == "checkpoint":
        last_fold = run.checkpoint(1, "best_f1")  # the last one read: the first fold's export would come before it
        last_fold.write_bytes(last_fold.read_bytes()[:1000])
    else:
        run.people.write_bytes(b"not a zip")
    args = ["--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--checkpoint", "best_f1", "--group", "people"]
    if damage == "people.npz":  # a warning, said before any model loads; then the photos are decided alone
        code, err = cli(infer.main, *args, capsys=capsys)
        lines = err.splitlines()
        warned = next(i for i, line in enumerate(lines) if "people.npz is unreadable" in line)
        loaded = next(i for i, line in enumerate(lines) if "fold(s) 0, 1 used" in line)
        assert code == 0 and warned < loaded and "its people are not grouped" in lines[warned]
        return
    monkeypatch.setattr(engines, "predict_batches", lambda *a, **k: pytest.fail("predicted before the check"))
    code, err = cli(infer.main, *args, capsys=capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    what = "best_f1.pt" if damage == "checkpoint" else "decision.json: expected 18 finite 'offsets'"
    assert lines[0].startswith("error:") and what in lines[0]
    assert not list(run.root.glob("onnx/*.onnx")) and not run.submission.exists()
