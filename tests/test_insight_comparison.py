"""src/insight/comparison.py via python -m tools.report: one self-contained HTML page comparing runs."""
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from src.config import policy
from src.labels import PROB_COLUMNS
from src.run.rundir import RunDir, report_file
from tests.helpers import ROOT, TINY, cli, run_py, tiny_cfg


class Page(HTMLParser):
    """Collects the text, the image sources and the tags left open."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.images, self.open = [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def cv_of(run: RunDir) -> float:
    oof = pd.concat([pd.read_csv(run.oof(k)) for k in run.folds() if run.oof(k).is_file()])
    from src.metrics import scores

    return scores(oof["label"], oof[PROB_COLUMNS].to_numpy().argmax(1))["f1"]


def fake_run(log_dir, name, lr, folds_done, with_metrics=True):
    """A run folder written by hand: config.yaml, a finished last.pt and oof.csv per fold done, metrics.csv;
    the OOF paths point at no image."""
    run = RunDir(log_dir, name)
    run.root.mkdir(parents=True)
    run.config.write_text(policy.dump(tiny_cfg(lr=lr, name=name)))
    rng = np.random.default_rng(len(name))
    rows = []
    for k in folds_done:
        run.fold(k).mkdir()
        torch.save({"model": {}, "finished": True}, run.last(k))
        labels = rng.integers(0, 18, 40)
        probs = rng.dirichlet(np.ones(18), 40)
        probs[np.arange(40), labels] += 2 * (rng.random(40) < 0.6)  # about 60% right
        probs /= probs.sum(1, keepdims=True)
        oof = pd.DataFrame({"path": [f"/nowhere/{k}_{i}_x_Asian_30/mask1.jpg" for i in range(40)], "label": labels,
                            "fold": k, "pred": probs.argmax(1)})
        pd.concat([oof, pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1).to_csv(run.oof(k), index=False)
        rows += [dict(fold=k, epoch=e, lr=lr, train_loss=2 - e / 2, val_loss=2.2 - e / 3, val_f1=0.3 + e / 10,
                      val_f1_mask=0.5, val_f1_gender=0.6, val_f1_age=0.4, time_s=30.0) for e in range(3)]
    if with_metrics:
        pd.DataFrame(rows).to_csv(run.metrics, index=False)
    return run


def test_report_of_hand_made_runs_with_missing_files(tmp_path):
    a = fake_run(tmp_path, "alpha", 0.01, [0, 1])
    b = fake_run(tmp_path, "beta", 0.002, [0], with_metrics=False)  # fold 1 missing, no metrics.csv
    (b.fold(1)).mkdir()  # a fold that started but has nothing yet
    (tmp_path / "cache").mkdir()  # not a run: no config.yaml
    proc = run_py("-m", "tools.report", "--log_dir", tmp_path)
    html = report_file(tmp_path).read_text()
    page = Page(html)
    text = " ".join(page.text)
    assert page.open == [] and "report:" in proc.stdout
    rows = re.findall(r"<tr><td><a href=\"#run-(\w+)\">", html)
    assert rows == sorted(["alpha", "beta"], key=lambda n: -cv_of(RunDir(tmp_path, n)))  # sorted by CV
    assert f"{cv_of(a):.4f}" in text and f"{cv_of(b):.4f}" in text
    assert "lr: 0.01" in text and "lr: 0.002" in text and "name:" not in text.split("Settings changed")[0]
    assert "2/2" in text and "1/2" in text and "no metrics.csv yet" in text
    assert "stopped: 1 fold(s) unfinished" in text
    assert "differs from the defaults" in text and "  lr: 0.002 -> 0.01" in text
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(page.images) == 1 + 2 + 2  # curves of alpha only; confusion and errors of both
    assert a.errors.is_file() and b.errors.is_file()
    assert "http" not in html.replace("http-equiv", "")  # nothing fetched from the network


def test_status_is_training_only_while_a_live_trainer_holds_a_fold_lock(tmp_path):
    from src.insight.comparison import summarize

    run = fake_run(tmp_path, "gamma", 0.01, [0])  # fold 1 of 2 unfinished
    hold = ("import sys, time\nfrom src.run.rundir import RunDir\n"
            "with RunDir(sys.argv[1], 'gamma').fold_lock(1):\n    print('held', flush=True)\n    time.sleep(60)\n")
    trainer = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert trainer.stdout.readline().strip() == "held"
        assert summarize(run).status == "training (fold 1)"
    finally:
        trainer.kill()  # like kill -9: the lock goes with the process
        trainer.wait()
    assert run.fold_lock_file(1).is_file()  # the file stays; only a held lock means training
    assert summarize(run).status == "stopped: 1 fold(s) unfinished"


def test_report_refuses_unknown_sort_and_absent_runs(tmp_path):
    fake_run(tmp_path, "alpha", 0.01, [0])
    proc = run_py("-m", "tools.report", "--log_dir", tmp_path, "--sort", "f1", check=False)
    assert proc.returncode == 2 and "choose one of: cv, name, start" in proc.stderr
    proc = run_py("-m", "tools.report", "--log_dir", tmp_path, "--runs", "alpha", "ghost", check=False)
    assert proc.returncode == 1 and "ghost" in proc.stderr


@pytest.mark.slow
def test_report_on_two_trained_runs_and_a_run_with_a_missing_fold(own_run, dataset, tmp_path, capsys):
    import infer
    import train
    from tools import report

    logs, name = own_run
    recipe = tmp_path / "wide.yaml"
    recipe.write_text("neck: bn\n")
    assert cli(train.main, "--data_dir", dataset, "--name", "wide", "--log_dir", logs, *TINY, "--config", recipe,
               "--lr", "3e-3", capsys=capsys)[0] == 0
    shutil.copytree(logs / name, logs / "half")
    shutil.rmtree(RunDir(logs, "half").fold(1))
    answers = tmp_path / "answers.csv"
    shutil.copy(dataset / "eval_answers.csv", answers)
    assert cli(infer.main, "--data_dir", dataset, "--run", "wide", "--log_dir", logs, "--tta", "none",
               "--num_workers", "0", capsys=capsys)[0] == 0

    assert report.main(["--log_dir", str(logs), "--answers", str(answers)]) == 0
    out = capsys.readouterr().out
    html = report_file(logs).read_text()
    page = Page(html)
    text = " ".join(page.text)
    assert page.open == []
    for run in ("tiny", "wide", "half"):
        assert f'id="run-{run}"' in html and f"{cv_of(RunDir(logs, run)):.4f}" in text
    assert "CV tuned" in text
    for run in ("tiny", "wide"):  # every fold finished: the cross-fitted tuned CV beside the argmax one
        assert f"{json.loads(RunDir(logs, run).cv.read_text())['cv_f1_tuned']:.4f}" in text
    differs = dict(zip(re.findall(r'<tr><td><a href="#run-(\w+)">', html),
                       re.findall(r'<span class="diff">(.*?)</span>', html, re.S)))  # the runs table's last column
    assert "neck: bn" in differs["wide"] and "lr: 0.003" in differs["wide"]
    assert "neck: prelu" in differs["tiny"] and "lr: 0.001" in differs["tiny"]
    assert "1/2" in text and "stopped: 1 fold(s) unfinished" in text
    assert "set by the command line: " in text and "  lr: 0.002 -> 0.003" in text  # on top of the recipe
    assert len(page.images) == 3 * 3 and all(s.startswith("data:image/png;base64,") for s in page.images)
    assert "eval F1" in text and "no submission to score" in text  # wide was inferred, the others not
    wide_log = RunDir(logs, "wide").train_log.read_text()
    assert "differs from the defaults: " in wide_log and "  neck: prelu -> bn" in wide_log
    assert "report:" in out
    assert list((RunDir(logs, "wide").tensorboard / "hparams").glob("events.*"))  # the HParams tab's data


def test_error_gallery_rows_are_the_most_confident_mistakes_one_photo_per_person_for_gender():
    from src.insight.oof import confident_errors
    from src.labels import PHOTO_NAMES, encode_label

    rows = []
    for person, gender, said_gender, conf in [("A", 1, 0, [0.90, 0.91, 0.96, 0.92, 0.93, 0.94, 0.95]),
                                              ("B", 0, 1, [0.8] + [0.2] * 6), ("C", 0, 0, [0.9] * 7)]:
        for photo, c in zip(PHOTO_NAMES, conf):
            mask = {"incorrect_mask": 1, "normal": 2}.get(photo, 0)
            said_mask = 2 if (person, photo) == ("C", "mask1") else mask
            probs = np.zeros(18)
            probs[encode_label(said_mask, said_gender, 1)] = c
            probs[encode_label(said_mask, 1 - said_gender, 1)] = 1 - c
            rows.append(dict(path=f"/d/{person}_x_Asian_40/{photo}.jpg", label=encode_label(mask, gender, 1),
                             **dict(zip(PROB_COLUMNS, probs))))
    errors = confident_errors(pd.DataFrame(rows), per_task=5)
    gender = errors[errors["task"] == "gender"]
    assert gender["path"].tolist() == ["/d/A_x_Asian_40/mask3.jpg", "/d/B_x_Asian_40/mask1.jpg"]
    assert gender[["label", "pred"]].values.tolist() == [["female", "male"], ["male", "female"]]
    assert gender["prob"].round(2).tolist() == [0.96, 0.8]
    mask = errors[errors["task"] == "mask"]
    assert mask[["path", "label", "pred"]].values.tolist() == [["/d/C_x_Asian_40/mask1.jpg", "wear", "not_wear"]]
    assert not (errors["task"] == "age").any()


def test_learning_curves_draw_only_the_validated_epochs():
    from src.insight.comparison import curves_figure

    nan = float("nan")
    metrics = pd.DataFrame(dict(fold=[0, 0, 0], epoch=[0, 1, 2], train_loss=[3.0, 2.0, 1.0],
                                val_loss=[nan, 1.5, 1.2], val_f1=[nan, 0.4, 0.5], val_f1_mask=[nan, 0.9, 1.0],
                                val_f1_gender=[nan, 0.8, 0.9], val_f1_age=[nan, 0.5, 0.6]))
    fig = curves_figure(metrics)
    val_loss, train_loss = fig.axes[0].lines
    assert list(val_loss.get_xdata()) == [1, 2] and list(val_loss.get_ydata()) == [1.5, 1.2]
    assert list(train_loss.get_xdata()) == [0, 1, 2]  # training is logged every epoch
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.4, 0.5]


def test_report_refuses_a_negative_count_of_map_photos(tmp_path):
    fake_run(tmp_path, "alpha", 0.01, [0])
    proc = run_py("-m", "tools.report", "--log_dir", tmp_path, "--cam_photos", "-1", check=False)
    assert proc.returncode == 2 and "--cam_photos must be 0 (no maps) or more, got -1" in proc.stderr
    assert not (tmp_path / "report.html").exists()
