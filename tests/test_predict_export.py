"""src/predict/export.py (export.py): model.onnx and model.json of finished runs, checked against PyTorch on real
images; the consumer example of docs/ship.md runs them with onnxruntime, numpy and Pillow alone."""
import io
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import export
import predict
from src.data.dataset import FaceDataset
from src.data.images import FileImages
from src.data.tables import load_eval
from src.engine import builders
from src.labels import CLASS_NAMES, PROB_COLUMNS
from src.predict import onnx_graph
from src.predict.export import CARD, MODEL
from src.predict.photos import TASK_COLUMNS
from src.predict.plans import plan_run
from src.run.rundir import RunDir
from tests.helpers import ROOT, TINY, applied_offsets, cli, first_eval_image, one_line, run_py


@pytest.fixture(scope="module")
def per_task_ema_run(dataset, trained_run):
    """(log_dir, name): a finished 2-fold run with per-task heads and EMA weights, at another size than `tiny`."""
    log_dir, _ = trained_run
    run_py("train.py", "--data_dir", dataset, "--log_dir", log_dir, "--name", "pt_ema", *TINY, "--epochs", "1",
           "--heads", "per_task", "--ema", "true", "--ema_decay", "0.5", "--img_height", "72", "--img_width", "56")
    return log_dir, "pt_ema"


def exported_probs(folder, dataset, log_dir, name, capsys, *extra):
    """ORT probabilities of model.onnx on the eval images, and infer's (torch engine) for the same settings."""
    code, err = cli(export.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--out", folder, *extra,
                    capsys=capsys)
    assert code == 0, err
    card = json.loads((folder / CARD).read_text())
    infer_out = folder.parent / f"{folder.name}.infer.csv"
    run_py("infer.py", "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--engine", "torch", "--out",
           infer_out, *extra)
    by_torch = pd.read_csv(folder.parent / f"{folder.name}.infer.probs.csv")[PROB_COLUMNS].to_numpy()
    cfg = plan_run(log_dir, name, "best_f1").cfg
    ds = FaceDataset(FileImages(load_eval(dataset)["path"], builders.work_size(cfg)), None,
                     builders.eval_transform(cfg))
    x = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    return card, onnx_graph.run_session(onnx_graph.session(str(folder / MODEL)), x)[0], by_torch, err


@pytest.mark.slow
def test_export_of_a_joint_two_fold_run_with_flip(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    card, ours, by_torch, err = exported_probs(tmp_path / "ship", dataset, log_dir, name, capsys)
    assert np.abs(ours - by_torch).max() < 1e-5
    assert card["parity"]["max_abs_diff"] < 1e-4 and card["parity"]["images"] == 28
    assert f"largest probability difference {card['parity']['max_abs_diff']:.2e}" in err
    assert card["classes"] == CLASS_NAMES and card["outputs"]["gender"] == ["male", "female"]
    assert card["input"] == dict(name="image", dtype="uint8", layout="NCHW", channels="RGB", height=64, width=48,
                                 batch="dynamic", normalisation="inside the graph")
    assert card["preprocess"]["resize"] == [dict(height=74, width=55, interpolation="area"),
                                            dict(height=64, width=48, interpolation="bilinear")]
    assert card["preprocess"]["crop"]["box"] == [0.0, 0.0, 1.0, 1.0]
    offsets = applied_offsets(log_dir / name)  # the run's decision travels with the model
    assert card["decision"]["offsets"] == (None if offsets is None else offsets.tolist())
    assert card["decision"]["rule"] == ("argmax" if offsets is None else "tuned")
    (run,) = card["runs"]
    assert run["name"] == name and run["folds"] == [0, 1] and card["ensemble"]["tta"] == "flip"
    assert [c["path"] for c in run["checkpoints"]] == [str(RunDir(log_dir, name).checkpoint(k, "best_f1"))
                                                      for k in (0, 1)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", c["sha256"]) for c in run["checkpoints"])
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", card["git_commit"]) and card["exported"].startswith("20")


@pytest.mark.slow
def test_export_of_a_per_task_ema_run(per_task_ema_run, dataset, tmp_path, capsys):
    log_dir, name = per_task_ema_run
    card, ours, by_torch, _ = exported_probs(tmp_path / "ship", dataset, log_dir, name, capsys, "--tta", "none",
                                             "--checkpoint", "last")  # last.pt: the EMA average, not the live weights
    assert np.abs(ours - by_torch).max() < 1e-5 and card["runs"][0]["heads"] == "per_task"
    assert card["input"]["height"] == 72 and card["runs"][0]["checkpoint"] == "last" and card["ensemble"] == dict(
        tta="none", rule="mean over runs of each run's mean softmax over its folds and TTA views")


@pytest.mark.slow
def test_export_refuses_to_write_above_the_tolerance_and_other_bad_requests(trained_run, per_task_ema_run, dataset,
                                                                             tmp_path, capsys):
    log_dir, name = trained_run
    out = tmp_path / "ship"
    code, err = cli(export.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--out", out,
                    "--parity_tolerance", "1e-12", capsys=capsys)
    line = one_line(err)
    assert code == 1 and re.search(r"differ from PyTorch's by up to \d\.\d+e-\d+ on 28 images, more than 1e-12", line)
    assert "--engine" not in line and "--parity_tolerance" in line  # what export.py itself takes
    assert not out.exists() or not any(out.iterdir())
    code, err = cli(export.main, "--data_dir", dataset, "--log_dir", log_dir, "--runs", name, "pt_ema", "--out", out,
                    capsys=capsys)
    assert code == 2 and "differ in input size" in one_line(err) and "tiny 64x48" in err and "pt_ema 72x56" in err
    code, err = cli(export.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--out",
                    dataset / "ship", capsys=capsys)
    assert code == 2 and "inside data_dir" in one_line(err) and not (dataset / "ship").exists()
    code, err = cli(export.main, "--data_dir", tmp_path / "nothing", "--log_dir", log_dir, "--run", name, "--out",
                    out, capsys=capsys)
    assert code == 2 and "give --data_dir of the run's data" in one_line(err)


CONSUMER_VENV = ROOT / ".cache" / "consumer-venv"


def consumer_python():
    """A virtual environment with only onnxruntime, numpy and Pillow (the versions of requirements.txt), made once
    and kept in .cache/."""
    python = CONSUMER_VENV / "bin" / "python"
    pins = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if re.match(r"(onnxruntime|numpy|pillow)==", line)]
    stamp = CONSUMER_VENV / "installed.txt"
    if not stamp.is_file() or stamp.read_text() != "\n".join(pins):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(CONSUMER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
        stamp.write_text("\n".join(pins))
    return python


@pytest.mark.slow
def test_the_docs_consumer_runs_without_torch(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    code, err = cli(export.main, "--data_dir", dataset, "--log_dir", log_dir, "--run", name, "--out", tmp_path / "ship",
                    capsys=capsys)
    assert code == 0, err
    page = (ROOT / "docs" / "ship.md").read_text()
    script = tmp_path / "consumer.py"
    script.write_text(page.split("<!-- consumer-example -->")[1].split("```python\n")[1].split("```")[0])
    python = consumer_python()
    modules = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('torch'), "
                              "u.find_spec('cv2'))"], capture_output=True, text=True, check=True).stdout
    assert modules.split() == ["None", "None"]
    photo = first_eval_image(dataset)
    proc = subprocess.run([str(python), str(script), str(tmp_path / "ship"), str(photo)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    head, *tasks = proc.stdout.strip().splitlines()
    theirs = int(re.match(rf"{re.escape(str(photo))}: class (\d+) ", head).group(1))
    their_tasks = [float(v) for line in tasks for v in re.findall(r"=([\d.]+)", line)]
    assert predict.main(["--log_dir", str(log_dir), "--run", name, str(photo)]) == 0
    ours = pd.read_csv(io.StringIO(capsys.readouterr().out)).iloc[0]
    # Pillow resamples a few grey levels away from OpenCV: the same class, task probabilities within 0.03
    assert theirs == ours["class"] and np.abs(ours[TASK_COLUMNS].to_numpy(float) - their_tasks).max() < 0.03


def test_model_json_describes_the_crop_and_runs_that_crop_differently_are_refused():
    from types import SimpleNamespace

    from src.errors import ConfigError
    from src.predict.export import common_crop
    from tests.helpers import tiny_cfg

    center = SimpleNamespace(name="c", cfg=tiny_cfg(crop="center", crop_box="0.1,0.2,0.9,0.8"))
    face = SimpleNamespace(name="f", cfg=tiny_cfg(crop="face", face_margin=0.3))
    whole = SimpleNamespace(name="n", cfg=tiny_cfg())
    assert common_crop([center])["box"] == (0.1, 0.2, 0.9, 0.8) and common_crop([center])["kind"] == "center"
    assert common_crop([whole])["box"] == (0.0, 0.0, 1.0, 1.0)
    card = common_crop([face])
    assert card["kind"] == "face" and card["margin"] == 0.3 and card["aspect"] == 48 / 64
    assert card["fallback_box"] == tuple(face.cfg.crop_box) and "MTCNN" in card["detector"]
    with pytest.raises(ConfigError, match="--runs crop differently .c crop center box 0.1 0.2 0.9 0.8, n crop none"):
        common_crop([center, whole])


@pytest.mark.slow
def test_export_takes_the_runs_own_data_and_refuses_a_read_only_out_before_the_parity_check(trained_run, dataset,
                                                                                           tmp_path, capsys):
    from tests.helpers import read_only

    log_dir, name = trained_run
    shut = tmp_path / "shut"
    shut.mkdir()
    with read_only(shut):
        code, err = cli(export.main, "--log_dir", log_dir, "--run", name, "--out", shut / "ship", capsys=capsys)
    assert code == 1 and "Read-only file system" in one_line(err) and "parity" not in err
    code, err = cli(export.main, "--log_dir", log_dir, "--run", name, "--out", tmp_path / "ship", capsys=capsys)
    card = json.loads((tmp_path / "ship" / CARD).read_text())
    assert code == 0 and card["parity"]["data_dir"] == str(dataset), err
