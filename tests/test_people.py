"""src/people.py: the photos of one person found again and decided once; the grouped CV never uses known ids."""
import numpy as np
import pytest

from src import people
from src.labels import NUM_CLASSES, encode_label
from src.people import (Grouping, PersonMetric, decide_people, group_photos, people_cv, photo_features,
                        purity_completeness, task_terms)

MASKS = np.array([0, 0, 0, 0, 0, 1, 2])  # a person's seven photos: five worn, one incorrect, one not worn


def class_probs(mask_p: np.ndarray, gender_p: np.ndarray, age_p: np.ndarray) -> np.ndarray:
    """(n, 18) probabilities, the product of the task probabilities (n, 3), (n, 2), (n, 3)."""
    joint = mask_p[:, :, None, None] * gender_p[:, None, :, None] * age_p[:, None, None, :]
    return joint.reshape(len(mask_p), NUM_CLASSES)


def three_people(rng):
    """21 shuffled photos of 3 people: appearance features around each person's centre, masks called right, and
    gender and age probabilities that disagree from photo to photo."""
    person = np.repeat(np.arange(3), 7)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    features = centres[person] + rng.normal(0, 0.3, (21, 2))
    mask_p = np.full((21, 3), 0.05)
    mask_p[np.arange(21), np.tile(MASKS, 3)] = 0.9
    gender_p = np.tile([[0.6, 0.4]], (21, 1))
    gender_p[7:14] = [0.3, 0.7]
    gender_p[[3, 10]] = gender_p[[3, 10], ::-1]  # one photo of person 0 and of person 1 say the other gender
    age_p = rng.dirichlet([2, 2, 2], 21)
    order = rng.permutation(21)
    return person[order], features[order], class_probs(mask_p, gender_p, age_p)[order]


def test_three_people_are_found_and_each_decided_once_as_by_hand():
    rng = np.random.default_rng(0)
    person, features, probs = three_people(rng)
    found = group_photos(features, probs)
    assert found.formed == 3 and found.single == 0 and found.fallback is None
    assert purity_completeness(found.groups, person) == dict(grouped=1.0, purity=1.0, completeness=1.0)
    classes = decide_people(probs, found.groups, None)
    p = probs.reshape(21, 3, 2, 3)
    for who in range(3):
        rows = person == who
        by_hand_gender = np.log(p[rows].sum((1, 3))).mean(0).argmax()  # mean log-probability over the seven
        by_hand_age = np.log(p[rows].sum((1, 2))).mean(0).argmax()
        assert (classes[rows] % 6 == encode_label(0, by_hand_gender, by_hand_age)).all()  # one gender and age
        assert sorted(classes[rows] // 6) == [0, 0, 0, 0, 0, 1, 2]  # five worn, one incorrect, one not worn
    alone = probs.argmax(1) % 6
    assert len({tuple(np.unique(alone[person == who])) for who in range(3)}) > 1 or len(np.unique(alone)) > 3


def test_the_offsets_task_terms_move_the_person_decision():
    rng = np.random.default_rng(1)
    person, features, probs = three_people(rng)
    found = group_photos(features, probs)
    offsets = np.zeros(NUM_CLASSES)
    for c in range(NUM_CLASSES):
        offsets[c] = 0.2 * (c // 6) + 9.0 * (c % 3 == 2)  # a mask term (irrelevant per person) and a large 60+ term
    assert np.allclose(task_terms(offsets)[1], [0.0, 0.0, 9.0]) and np.allclose(task_terms(offsets)[0], 0.0)
    assert (decide_people(probs, found.groups, offsets) % 3 == 2).all()


@pytest.mark.parametrize("n", [20, 27, 6])
def test_photos_that_are_not_whole_people_fall_back_to_none_with_the_reason(n):
    rng = np.random.default_rng(2)
    _, features, probs = three_people(rng)
    features = np.concatenate([features, features])[:n]
    probs = np.concatenate([probs, probs])[:n]
    found = group_photos(features, probs)
    assert (found.groups == -1).all() and found.formed == 0 and found.single == n
    assert found.summary() == (f"group people: none ({n} photos are not a multiple of 7, so they are not whole "
                               f"people); every photo decided alone")
    assert (decide_people(probs, found.groups, None) == probs.argmax(1)).all()


def test_a_person_whose_masks_are_not_five_one_one_is_decided_photo_by_photo():
    rng = np.random.default_rng(3)
    person, features, probs = three_people(rng)
    wrong = np.flatnonzero((person == 2) & (probs.argmax(1) // 6 == 0))[0]
    mask_p = np.array([0.05, 0.9, 0.05])  # a worn photo called incorrect: person 2 now has two incorrect photos
    probs[wrong] = class_probs(mask_p[None], probs[wrong].reshape(3, 2, 3).sum((0, 2))[None],
                               probs[wrong].reshape(3, 2, 3).sum((0, 1))[None])[0]
    found = group_photos(features, probs)
    assert found.formed == 2 and (found.groups[person == 2] == -1).all() and found.single == 7
    assert (decide_people(probs, found.groups, None)[person == 2] == probs[person == 2].argmax(1)).all()


def test_the_grouped_cv_never_uses_the_known_ids():
    """The ids score the clustering afterwards; the groups and the CV come from the features and probabilities
    alone, so ids scrambled change neither."""
    rng = np.random.default_rng(4)
    rows = [three_people(rng) for _ in range(4)]  # four folds of three people
    person = np.concatenate([r[0] + 3 * k for k, r in enumerate(rows)])
    embedded = np.concatenate([r[1] + 20 * k for k, r in enumerate(rows)])
    probs = np.concatenate([r[2] for r in rows])
    labels = probs.argmax(1)
    folds = np.repeat(np.arange(4), 21)
    honest = people_cv(probs, labels, folds, embedded, person)
    scrambled = people_cv(probs, labels, folds, embedded, rng.permutation(person))
    assert np.array_equal(honest.groups, scrambled.groups) and honest.cv_tuned == scrambled.cv_tuned
    assert honest.clustering["purity"] == 1.0 and scrambled.clustering["purity"] < 1.0
    assert honest.clustering["formed"] == 12


def test_the_person_metric_learns_which_differences_tell_people_apart():
    """Two features: one the person's own, one that varies from photo to photo far more. Plain distances follow
    the noise; the metric learnt from known people follows the person."""
    rng = np.random.default_rng(5)

    def photos(n_people):
        who = np.repeat(np.arange(n_people), 7)
        own = rng.normal(0, 1, n_people)[who] + rng.normal(0, 0.002, len(who))
        return np.stack([own, rng.normal(0, 10, len(who))], 1), who

    train, train_who = photos(60)
    test, test_who = photos(40)
    metric = PersonMetric.fit(train, train_who, components=1)

    def nearest_is_same(x):
        d = np.abs(x[:, None, :] - x[None, :, :]).sum(2) + np.eye(len(x)) * 1e9
        return (test_who[d.argmin(1)] == test_who).mean()

    assert nearest_is_same(metric(test)) > 0.9 > 0.5 > nearest_is_same(test / test.std(0))


def test_model_probabilities_can_join_the_features():
    rng = np.random.default_rng(6)
    _, features, probs = three_people(rng)
    assert photo_features(features, probs).shape == (21, 2)
    assert photo_features(features, probs, model_weight=1.0).shape == (21, 7)


def test_the_grouping_record_says_what_was_formed():
    g = Grouping(np.array([0] * 7 + [-1] * 3), 1, 3, seconds=1.234)
    assert g.record() == dict(formed=1, single=3, fallback=None, seconds=1.23)
    assert g.summary() == ("group people: 1 groups of seven formed, 3 of 10 photos left single (decided alone), "
                           "in 1.2 s")
    assert people.ungrouped(4, "--group none").summary().startswith("group people: none (--group none)")
