"""bench/ceiling.py and bench/people.py: the ceiling of a generated set's own people, and a run judged against it
per photo and per person."""
import pandas as pd
import pytest

from bench import ceiling, people


def test_the_ceiling_draws_the_very_people_of_the_set_and_refuses_another_seed(dataset, capsys):
    c = ceiling.ceiling(dataset, 6)  # tests/helpers.make_data draws seed 6
    assert (c["train_people"], c["eval_people"]) == (24, 4)
    assert 0 < c["cv_tuned"] <= 1 and 0 < c["eval_argmax"]["f1"] <= 1
    assert c["eval_argmax"]["f1_mask"] == 1.0 and c["eval_argmax"]["f1_gender"] == 1.0  # told perfectly
    train = ceiling.train_people(dataset, 6)
    written = pd.read_csv(dataset / "train" / "train.csv", dtype=str)
    assert train["age"].astype(str).tolist() == written["age"].tolist()
    with pytest.raises(SystemExit, match="was not made by tools.make_synthetic_data with --seed 7"):
        ceiling.ceiling(dataset, 7)
    ceiling.main(["--data_dir", str(dataset), "--seed", "6"])
    assert "| tuned | " in capsys.readouterr().out


@pytest.mark.slow
def test_the_people_bench_decides_four_ways_and_checks_the_submission(trained_run, dataset, capsys):
    log_dir, name = trained_run
    people.main(["--data_dir", str(dataset), "--seed", "6", "--log_dir", str(log_dir), "--run", name])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| per ")]
    assert [r.split(" | ")[0] for r in rows] == ["| per photo, argmax", "| per photo, tuned", "| per person, argmax",
                                                "| per person, tuned"]
    assert "infer --group people: " in out and "of which the grouping" in out and "eval clustering: grouped" in out
