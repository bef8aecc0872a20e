import numpy as np
import pandas as pd

from src.data.tables import add_labels
from src.labels import CLASS_NAMES, age_band, decode_label, encode_label


def test_encode_decode_round_trip_all_classes():
    seen = set()
    for mask in range(3):
        for gender in range(2):
            for band in range(3):
                label = encode_label(mask, gender, band)
                assert decode_label(label) == (mask, gender, band)
                seen.add(label)
    assert seen == set(range(18))
    arr = np.arange(18)
    assert (encode_label(*decode_label(arr)) == arr).all()
    assert CLASS_NAMES[encode_label(2, 1, 2)] == "not_wear/female/60+"


def test_age_band_boundaries_and_filter():
    assert [age_band(a) for a in (29, 30, 58, 59, 60)] == [0, 1, 1, 1, 2]
    assert [age_band(a, 59) for a in (29, 30, 58, 59, 60)] == [0, 1, 1, 2, 2]
    assert [age_band(a, 58) for a in (57, 58)] == [1, 2]
    assert list(age_band(np.array([29, 30, 58, 59, 60]), 59)) == [0, 1, 1, 2, 2]


def test_age_filter_changes_training_labels_only():
    images = pd.DataFrame({"mask": [0, 0, 2], "gender": [1, 1, 0], "age": [58, 59, 60]})
    add_labels(images, age_filter=59)
    assert list(images["label"]) == [4, 4, 14]  # true bands: 58 and 59 are 30-59
    assert list(images["train_label"]) == [4, 5, 14]  # training: 59 counts as 60+
