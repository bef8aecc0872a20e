"""Class encoding: class = 6 * mask + 3 * gender + age band, the competition's 18 classes. Light: numpy only."""
import numpy as np

PHOTO_NAMES = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
PHOTO_MASK = {**{f"mask{i}": 0 for i in range(1, 6)}, "incorrect_mask": 1, "normal": 2}
MASK_NAMES = ("wear", "incorrect", "not_wear")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", "60+")
NUM_CLASSES = 18
CLASS_NAMES = [f"{m}/{g}/{a}" for m in MASK_NAMES for g in GENDER_NAMES for a in AGE_NAMES]
# The three tasks in decode_label's order, each with its class names (per-task heads, per-task views).
TASK_NAMES = {"mask": MASK_NAMES, "gender": GENDER_NAMES, "age": AGE_NAMES}
TASK_SIZES = tuple(len(names) for names in TASK_NAMES.values())


def encode_label(mask, gender, band):
    """Works on ints and arrays alike."""
    return 6 * mask + 3 * gender + band


def decode_label(label):
    """label -> (mask, gender, age band); works on ints and arrays alike."""
    return label // 6, (label // 3) % 2, label % 3


BAND_CUTS = (30, 60)  # the first age of the 30-59 band and of the 60+ band
AGES = (18, 60)  # the ages in the data (and the ones the age-number heads tell apart; an age outside keeps its band)


def age_band(age, old_from: int = BAND_CUTS[1]):
    """0 under 30, 1 from 30 to old_from-1, 2 from old_from; old_from < 60 is the age filter."""
    if np.ndim(age):
        age = np.asarray(age)
        return np.where(age < BAND_CUTS[0], 0, np.where(age < old_from, 1, 2))
    return 0 if age < BAND_CUTS[0] else (1 if age < old_from else 2)


def encode_target(label, years=None):
    """A training target: the 18-class label, plus NUM_CLASSES x (years - AGES[0] + 1) where the exact age is
    known (years clamped into AGES); works on ints and arrays alike."""
    if years is None:
        return label
    return label + NUM_CLASSES * (np.clip(years, *AGES) - AGES[0] + 1)


def target_label(target):
    """The 18-class label of a training target (numpy or torch)."""
    return target % NUM_CLASSES


def target_years(target):
    """The exact age of a training target, or AGES[0] - 1 where it is not known (numpy or torch)."""
    return target // NUM_CLASSES + AGES[0] - 1


PROB_COLUMNS = [f"p{k}" for k in range(NUM_CLASSES)]  # probability columns of oof.csv and eval_probs.csv


def task_probabilities(probs):
    """(mask, gender, age) probabilities, each summed out of the 18-class ones (N, 18); numpy or torch alike."""
    p = probs.reshape(-1, *TASK_SIZES)
    return p.sum((2, 3)), p.sum((1, 3)), p.sum((1, 2))
