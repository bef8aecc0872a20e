"""bench/decisions.py: one row per rule, whose CV figures are the run's own cv.json."""
import json
import shutil

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
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {name} |")]
    assert [row[1] for row in rows] == list(decisions.RULES)
    cv = json.loads((tmp_path / name / "cv.json").read_text())
    assert float(rows[0][2]) == pytest.approx(cv["cv_f1"], abs=5e-5)  # argmax
    assert float(rows[2][2]) == pytest.approx(cv["cv_f1_tuned"], abs=5e-5)  # task terms: what train.py fitted
    other = tmp_path / "other"  # another data folder: its eval images come in another order
    other.mkdir()
    answers = pd.read_csv(dataset / "eval_answers.csv")
    answers.iloc[::-1].to_csv(other / "eval_answers.csv", index=False)
    with pytest.raises(SystemExit, match="not those of"):
        decisions.main(["--data_dir", str(other), "--log_dir", str(tmp_path), "--run", name])
