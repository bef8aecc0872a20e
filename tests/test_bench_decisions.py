"""bench/decisions.py: one row per rule, whose CV figures are the run's own cv.json."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import infer
from bench import decisions

pytestmark = pytest.mark.slow  # infers a trained run


def test_decisions_bench_prints_each_rule_and_the_runs_own_cv(trained_run, dataset, tmp_path, capsys):
    log_dir, name = trained_run
    shutil.copytree(log_dir / name, tmp_path / name)  # infer writes into the run: use a copy
    assert infer.main(["--data_dir", str(dataset), "--log_dir", str(tmp_path), "--run", name]) == 0
    capsys.readouterr()
    decisions.main(["--data_dir", str(dataset), "--log_dir", str(tmp_path), "--run", name])
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(f"| {name} |") and " | out of fold" not in
            line and not line.startswith(f"| {name} | eval")]
    assert [row[1] for row in rows] == list(decisions.RULES)
    cv = json.loads((tmp_path / name / "cv.json").read_text())
    assert float(rows[0][2]) == pytest.approx(cv["cv_f1"], abs=5e-5)  # argmax
    assert float(rows[3][2]) == pytest.approx(cv["cv_f1_tuned"], abs=5e-5)  # age terms: what train.py fitted
    curve = [line.split(" | ") for line in out.splitlines() if line.startswith(f"| {name} | out of fold")
             or line.startswith(f"| {name} | eval")]
    assert len(curve) == 2 and len(curve[0]) == 2 + len(decisions.AGE_60_TERMS)
    assert float(curve[0][2]) == pytest.approx(float(rows[0][2]), abs=5e-5)  # term 0: the argmax, out of fold
    assert float(curve[1][2]) == pytest.approx(float(rows[0][3]), abs=5e-5)  # and on eval
    p60 = decisions.age_60_term(np.full((1, 18), 1 / 18), np.array([2]), np.full((1, 18), 1 / 18), np.array([0]), 0.5)
    assert p60 == (pytest.approx(1 / 18), 0.0)  # the tie goes to class 2 (a 60+ class): right for label 2 (F1 1 of
    # that class, 0 for the other 17), wrong for label 0
    other = tmp_path / "other"  # another data folder: its eval images come in another order
    other.mkdir()
    answers = pd.read_csv(dataset / "eval_answers.csv")
    answers.iloc[::-1].to_csv(other / "eval_answers.csv", index=False)
    with pytest.raises(SystemExit, match="not those of"):
        decisions.main(["--data_dir", str(other), "--log_dir", str(tmp_path), "--run", name])
