"""bench/decisions.py: one row per rule, whose CV figures are the run's own cv.json; the search (fit_offsets) raises
macro-F1 as computed by hand."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import infer
from bench import decisions
from src import decision
from tests.helpers import hand_table


def test_offsets_raise_macro_f1_on_a_hand_made_table():
    probs, labels = hand_table()
    # argmax never says 60+. Class 0 perfect (F1 1); class 1: tp 4, fp 2, fn 0 -> 8/10; class 2: 0.
    # Over the three present classes: (1 + .8 + 0) / 3 = .6
    assert decision.fast_macro_f1(labels, probs.argmax(1), 3) == pytest.approx(0.6)
    offsets = decisions.fit_offsets(probs, labels)
    tuned = decision.decide(probs, offsets)
    # log .4 + o2 > log .5 + o1 while log .05 + o2 < log .85 + o1: every row right, macro-F1 1
    assert list(tuned) == list(labels) and decision.fast_macro_f1(labels, tuned, 3) == 1.0
    assert np.log(0.4) + offsets[2] > np.log(0.5) + offsets[1] and np.log(0.05) + offsets[2] < np.log(0.85) + offsets[1]
    assert list(decision.decide(probs, None)) == list(probs.argmax(1))


def test_each_searched_class_offset_is_the_sum_of_its_task_terms():
    probs, labels = hand_table()
    offsets = decisions.fit_offsets(probs, labels)
    # the age term that lifted 60+ for masked men lifts it for every mask state and gender alike
    by_class = offsets.reshape(3, 2, 3)  # mask, gender, age
    age = by_class - by_class[..., :1]
    assert np.allclose(age, age[0, 0]) and age[0, 0, 2] > age[0, 0, 1]
    assert decision.TERMS_OF_CLASS.shape == (18, 8) and (decision.TERMS_OF_CLASS.sum(1) == 3).all()
    assert list(np.flatnonzero(decision.TERMS_OF_CLASS[17])) == [2, 4, 7]  # not_wear, female, 60+


@pytest.mark.slow  # infers a trained run
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
