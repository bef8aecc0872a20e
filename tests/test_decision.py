"""src/decision.py: the plug-in offsets raise macro-F1 as computed by hand; cross-fitting never uses a fold's own
rows. The search (bench/decisions.py's fit_offsets) is tested in test_bench_decisions.py."""
import numpy as np
import pytest

from src import decision
from src.metrics import macro_f1
from tests.helpers import hand_table


def test_fast_macro_f1_is_sklearns():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 18, 200), rng.integers(0, 18, 200)
        agree = rng.random(200) < 0.5
        p[agree] = y[agree]
        assert decision.fast_macro_f1(y, p) == pytest.approx(macro_f1(y, p), abs=1e-12)
    y = np.array([0, 0, 1])
    assert decision.fast_macro_f1(y, np.array([0, 0, 0]), 3) == pytest.approx((0.8 + 0 + 0) / 3)


def test_plugin_offsets_are_minus_log_f1_of_each_task_value():
    probs, labels = hand_table()
    offsets = decision.plugin_offsets(probs, labels)
    # argmax: masked (F1 1), male (F1 1), age <30 F1 1, 30-59 F1 8/10 (the two 60+ rows land there), 60+ F1 0,
    # floored at 0.1. Values no label holds (incorrect, not worn, female) get 0.
    terms = np.array([0, 0, 0, 0, 0, 0, -np.log(0.8), -np.log(decision.F1_FLOOR)])
    assert offsets == pytest.approx(decision.TERMS_OF_CLASS @ terms)
    assert offsets[:3] == pytest.approx([0.0, 0.2231, 2.3026], abs=1e-4)
    # 60+ row: log .4 + 2.303 = 1.386 beats log .5 + .223 = -0.470; 30-59 row: log .85 + .223 = 0.061 beats
    # log .05 + 2.303 = -0.693; under-30 row: log .9 = -0.105 beats -0.693. Every row right.
    assert list(decision.decide(probs, offsets)) == list(labels)


def test_cross_fitting_never_uses_a_folds_own_rows():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(18), 120)
    labels, folds = rng.integers(0, 18, 120), np.repeat([0, 1, 2], 40)
    seen = []
    real = decision.plugin_offsets

    def spy(p, y):
        seen.append(p)
        return real(p, y)

    out = decision.cross_fitted(probs, labels, folds, spy)
    assert len(seen) == 3 and out.shape == (120,)
    for k, fitted_on in enumerate(seen):
        own = {tuple(r) for r in probs[folds == k]}
        assert len(fitted_on) == 80 and not own & {tuple(r) for r in fitted_on}
    for k in range(3):  # each fold is decided by the offsets of the others
        rest = folds != k
        expected = decision.decide(probs[folds == k], real(probs[rest], labels[rest]))
        assert list(out[folds == k]) == list(expected)


def test_the_cross_fitted_cv_shows_whether_offsets_help_rows_they_were_not_fitted_on():
    # Two folds, each holding the hand-made table above: offsets fitted on one fold fix the other.
    probs, labels = hand_table()
    helps = decision.tune(np.tile(probs, (2, 1)), np.tile(labels, 2), np.repeat([0, 1], 10))
    # macro over all 18 classes, 15 of them absent: argmax (1 + .8 + 0) / 18, tuned 3 / 18
    assert helps.cv_argmax == pytest.approx(1.8 / 18) and helps.cv_tuned == pytest.approx(3 / 18)
    assert list(decision.decide(probs, helps.offsets)) == list(labels)
    # Fold 1's rare rows are labelled 1. Fitted on fold 1 (no 60+ label: every term 0) the offsets leave fold 0 at
    # argmax; fitted on fold 0 they send fold 1's two rows to 60+. Class 0 F1 1, class 1: tp 8 of 10 true and
    # 10 predicted (.8), class 2: 0 -> 1.8 / 18, below the argmax's (1 + 20/22) / 18: the CV says they hurt.
    other = labels.copy()
    other[8:] = 1
    hurts = decision.tune(np.tile(probs, (2, 1)), np.concatenate([labels, other]), np.repeat([0, 1], 10))
    assert hurts.cv_tuned == pytest.approx(1.8 / 18) and hurts.cv_argmax == pytest.approx((1 + 20 / 22) / 18)
