"""bench/age_ceiling.py: the age macro-F1 a learner reading the generator's exact cues reaches, and the per-value
offsets of src/decision.py it decides with."""
import numpy as np
import pytest

from bench import age_ceiling
from src.decision import value_offsets
from src.labels import age_band


def test_cues_follow_the_age_and_the_plugin_offsets_favour_the_weak_band():
    cues, ages, _ = age_ceiling.people(600, np.random.default_rng(0))
    bands = age_band(ages)
    assert cues.shape == (600, 4) and set(bands) == {0, 1, 2}
    assert cues[bands == 2, 3].mean() > cues[bands == 1, 3].mean() > cues[bands == 0, 3].mean()  # wrinkles
    probs = np.array([[0.9, 0.1, 0.0]] * 4 + [[0.1, 0.9, 0.0]] * 4 + [[0.0, 0.6, 0.4]] * 2)
    truth = np.array([0] * 4 + [1] * 4 + [2, 1])  # argmax: band 0 perfect, band 1 takes the one 60+ person
    offsets = value_offsets(truth, probs.argmax(1), 3)
    assert offsets[2] == pytest.approx(-np.log(0.1)) and offsets[0] == pytest.approx(0)
    assert 0 < offsets[1] < offsets[2]


def test_the_bench_prints_both_rows(capsys, monkeypatch):
    monkeypatch.setattr(age_ceiling, "TEST_PEOPLE", 2000)
    age_ceiling.main(["--people", "225", "--repeats", "2", "--seed", "1"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| 2")]
    assert len(rows) == 2
    for row in rows:
        argmax, tuned = float(row[1].split()[0]), float(row[2].split()[0])
        assert 0.4 < argmax < 1 and 0.4 < tuned < 1
