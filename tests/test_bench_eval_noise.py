"""bench/eval_noise.py: how far a CV and an eval lie apart by sampling alone, for a learner scored as cpu15 is."""
import numpy as np
import pytest

from bench import eval_noise
from src.labels import decode_label


def test_each_person_gives_seven_photos_whose_classes_follow_the_age_probabilities():
    age_probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    genders = np.array([1, 0])
    probs = eval_noise.class_probs(age_probs, genders)
    labels = eval_noise.photo_labels(genders, np.array([0, 2]))
    assert probs.shape == (14, 18) and np.allclose(probs.sum(1), 1)
    mask, gender, age = decode_label(probs.argmax(1))
    assert mask.tolist() == [0, 0, 0, 0, 0, 1, 2] * 2  # five worn, one incorrect, one without
    assert gender.tolist() == [1] * 7 + [0] * 7 and age.tolist() == [0] * 7 + [2] * 7
    assert (probs.argmax(1) == labels).all()  # both people's argmax is their truth here
    assert probs[7:].max(1) == pytest.approx(0.6)


def test_blurring_the_cues_lowers_the_eval_score():
    clean = [eval_noise.one_draw(np.random.default_rng(s), 300, [1000])[1][0] for s in range(3)]
    noisy = [eval_noise.one_draw(np.random.default_rng(s), 300, [1000], cue_noise=1.0)[1][0] for s in range(3)]
    assert 0.6 < np.mean(clean) < 0.9
    assert np.mean(noisy) < np.mean(clean) - 0.05


def test_the_bench_prints_a_row_per_eval_size(capsys):
    eval_noise.main(["--draws", "3", "--eval_people", "100", "400", "--seed", "2"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and
            line[2].isdigit()]
    assert [row[0] for row in rows] == ["| 100", "| 400"]
    for row in rows:
        assert 0.4 < float(row[1].split()[0]) < 1
        assert all(0 <= int(cell.rstrip("% |")) <= 100 for cell in row[3:])


def test_negative_noise_is_refused(capsys):
    with pytest.raises(SystemExit):
        eval_noise.main(["--cue_noise", "-1"])
    assert "--cue_noise must be at least 0" in capsys.readouterr().err
