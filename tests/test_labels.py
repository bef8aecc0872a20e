"""src/labels.py: the 18 classes and the age bands."""
import numpy as np

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
