"""The data tables: train.csv and its person folders, info.csv, corrections, labels with the age filter,
person-level folds, and the pseudo-labelled and unlabelled image lists. Every problem names its file and row."""
from __future__ import annotations

import io
import logging
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from src.data.images import IMAGE_EXTS, inside
from src.errors import DataError
from src.files import irregular, read_regular, real, shown, within
from src.labels import AGE_NAMES, GENDER_NAMES, NUM_CLASSES, PHOTO_MASK, PHOTO_NAMES, age_band, encode_label

log = logging.getLogger("maskcls")

CORRECTION_FIXES = ("gender_male", "gender_female", "swap_incorrect_normal", "age_N")  # age_N: the age is N years
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID", "ans")
GENDERS = {"male": 0, "female": 1}
AGE_RANGE = (0, 120)
SKIPPED = " skipped"  # ends the message of a correction whose id the data does not hold


def list_person_photos(folder: Path, root: Path, problems: list[str], junk: list[str]) -> dict[str, Path]:
    """The seven photos of a person folder by name; each must be a regular file that resolves inside `root`."""
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.name.startswith("."):
            junk.append(str(f))
            continue
        stem, ext = f.stem, f.suffix.lower()
        if stem not in PHOTO_NAMES or ext not in IMAGE_EXTS:
            problems.append(f"{f}: unexpected file; a person folder holds {', '.join(PHOTO_NAMES)} "
                            f"with extension {'/'.join(IMAGE_EXTS)}")
            continue
        if stem in found:
            problems.append(f"{folder}: two files for {stem}: {found[stem].name} and {f.name}")
            continue
        found[stem] = f
        if not within(f, root):  # a symlink out of the data is never opened, not even to say what it is
            problems.append(f"{shown(f)}: resolves outside {root}; a photo must lie inside the data")
        elif why := irregular(f):  # a named pipe or a device would block or never end when read
            problems.append(f"{shown(f)}: {why}")
    missing = [n for n in PHOTO_NAMES if n not in found]
    if missing:
        problems.append(f"{folder}: missing {', '.join(missing)} (a person folder needs all seven photos)")
    return found


def read_csv_checked(path: Path, columns, problems: list[str]) -> pd.DataFrame | None:
    why = irregular(path)
    if why:
        problems.append(f"{path}: {'file not found' if why == 'not found' else why}")
        return None
    try:
        df = pd.read_csv(io.BytesIO(read_regular(path)), dtype=str, keep_default_na=False)
    except Exception as e:
        problems.append(f"{path}: cannot be parsed as CSV ({e})")
        return None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        problems.append(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(columns)}, "
                        f"found {','.join(df.columns)}")
        return None
    return df


def load_people(data_dir: Path, problems: list[str]) -> pd.DataFrame | None:
    csv_path = data_dir / "train" / "train.csv"
    df = read_csv_checked(csv_path, TRAIN_COLUMNS, problems)
    if df is None:
        return None
    for i, row in df.iterrows():
        where = f"{csv_path} row {i + 2} (id {row['id']})"
        age = parse_age(row["age"])
        if isinstance(age, str):
            problems.append(f"{where}: age {row['age']!r} {age}")
        if row["gender"] not in GENDERS:
            problems.append(f"{where}: gender {row['gender']!r} is not one of {', '.join(GENDERS)}")
    for pid, n in Counter(df["id"]).items():
        if n > 1:
            problems.append(f"{csv_path}: person id {pid} appears {n} times")
    return df


def parse_age(text: str) -> int | str:
    """The age as an int, or what is wrong with it."""
    if not re.fullmatch(r"-?[0-9]+", text.strip()):
        return "is not a whole number (ASCII digits)"
    age = int(text)
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        return f"is out of range {AGE_RANGE[0]}..{AGE_RANGE[1]}"
    return age


def load_corrections(path: str) -> pd.DataFrame:
    if path.lower() == "none" or not path:
        return pd.DataFrame(columns=["id", "fix", "note"])
    p = Path(path)
    problems: list[str] = []
    df = read_csv_checked(p, ("id", "fix"), problems)
    if df is not None:
        for i, fix in enumerate(df["fix"]):
            if fix not in CORRECTION_FIXES[:-1] and not corrected_age(fix):
                problems.append(f"{p} row {i + 2}: fix {fix!r} is not one of {', '.join(CORRECTION_FIXES)} (age_N: "
                                f"N a whole age from {AGE_RANGE[0]} to {AGE_RANGE[1]})")
    if problems:
        raise DataError(problems)
    return df


def corrected_age(fix) -> int | None:
    """N of a fix age_N (a whole age within AGE_RANGE), else None."""
    text = str(fix)
    if not text.startswith("age_") or not text[4:].isdigit():
        return None
    age = int(text[4:])
    return age if AGE_RANGE[0] <= age <= AGE_RANGE[1] else None


def build_image_table(data_dir: Path, people: pd.DataFrame, problems: list[str], junk: list[str]) -> pd.DataFrame:
    img_root = data_dir / "train" / "images"
    if not img_root.is_dir():
        problems.append(f"{img_root}: folder not found")
        return pd.DataFrame()
    rows, owners = [], {}
    for i, p in people.iterrows():
        folder, problem = inside(img_root, p["path"])
        if problem:
            problems.append(f"{data_dir / 'train' / 'train.csv'} row {i + 2} (id {p['id']}): path {p['path']!r} "
                            f"{problem}")
            continue
        resolved = real(folder)
        if resolved in owners:
            problems.append(f"{data_dir / 'train' / 'train.csv'} row {i + 2} (id {p['id']}): folder {p['path']!r} "
                            f"is also the folder of id {owners[resolved]}")
            continue
        owners[resolved] = p["id"]
        if not folder.is_dir():
            problems.append(f"{folder}: person folder listed in train.csv (id {p['id']}) not found")
            continue
        photos = list_person_photos(folder, img_root, problems, junk)
        for name, f in photos.items():
            rows.append(dict(path=str(f), person_id=p["id"], photo=name, mask=PHOTO_MASK[name],
                             gender=GENDERS.get(p["gender"], -1),
                             age=parse_age(p["age"])))
    junk.extend(str(f) for f in img_root.iterdir() if f.name.startswith("."))
    return pd.DataFrame(rows)


def apply_corrections(images: pd.DataFrame, corrections: pd.DataFrame) -> list[str]:
    """Fix labels in place by person id; return one message per change (and per id not present)."""
    changes = []
    for _, c in corrections.iterrows():
        sel = images["person_id"] == c["id"]
        if not sel.any():
            changes.append(f"{c['id']}: not in this dataset, {c['fix']}{SKIPPED}")
            continue
        if corrected_age(c["fix"]) is not None:  # the number itself: its band and a number age head's target follow
            old, new = int(images.loc[sel, "age"].iloc[0]), corrected_age(c["fix"])
            images.loc[sel, "age"] = new
            changes.append(f"{c['id']}: age {old} -> {new}")
        elif c["fix"] in ("gender_male", "gender_female"):
            new = 0 if c["fix"] == "gender_male" else 1
            old = int(images.loc[sel, "gender"].iloc[0])
            images.loc[sel, "gender"] = new
            changes.append(f"{c['id']}: gender {GENDER_NAMES[old]} -> {GENDER_NAMES[new]}")
        else:
            inc, nor = sel & (images["photo"] == "incorrect_mask"), sel & (images["photo"] == "normal")
            images.loc[inc, "mask"], images.loc[nor, "mask"] = 2, 1
            changes.append(f"{c['id']}: incorrect_mask and normal swapped")
    return changes


def add_labels(images: pd.DataFrame, age_filter: int) -> pd.DataFrame:
    images["label"] = encode_label(images["mask"], images["gender"], age_band(images["age"].to_numpy()))
    images["train_label"] = encode_label(images["mask"], images["gender"],
                                         age_band(images["age"].to_numpy(), age_filter))
    return images


def assign_folds(images: pd.DataFrame, n_folds: int, seed: int, notes: list[str] | None = None) -> pd.DataFrame:
    """StratifiedGroupKFold: a person's seven photos share one fold; strata are gender x true age band.
    n_folds may not exceed the people; a stratum with fewer people than folds leaves some folds without it, which
    is a warning (appended to `notes` and logged), not an error, so small subsets train."""
    strata = images["gender"].to_numpy() * 3 + age_band(images["age"].to_numpy())
    people = pd.Series(strata, index=images["person_id"]).groupby(level=0).first()
    if len(people) < n_folds:
        raise DataError([f"n_folds {n_folds} exceeds the {len(people)} people of the data: every fold needs a "
                         f"person to validate on; use --n_folds {len(people)} or fewer"])
    counts = people.value_counts().sort_index()
    for s, m in counts[counts < n_folds].items():
        message = (f"stratum {GENDER_NAMES[s // 3]}, age {AGE_NAMES[s % 3]} has {m} people for {n_folds} folds: "
                   f"{n_folds - m} fold(s) validate without it")
        log.warning("warning: %s", message)
        if notes is not None:
            notes.append(message)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    images["fold"] = -1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)  # said above, by name
        for k, (_, val_idx) in enumerate(splitter.split(images, strata, groups=images["person_id"])):
            images.loc[images.index[val_idx], "fold"] = k
    return images


def load_train(data_dir, corrections: str, age_filter: int, n_folds: int | None, seed: int,
               report: dict | None = None) -> pd.DataFrame:
    """The training image table: path, person_id, photo, mask, gender, age, label, train_label, fold
    (fold -1 when n_folds is None: callers that only need the images). The settings have no defaults here: each
    caller passes its config's (corrections 'none' disables them).

    `label` uses the true age bands (validation); `train_label` applies the age filter (training).
    Raises DataError listing every structural problem. `report` (if given) receives counts and changes.
    """
    data_dir = Path(data_dir)
    problems: list[str] = []
    junk: list[str] = []
    if not data_dir.is_dir():
        raise DataError([f"{data_dir}: data_dir not found (expected train/ and eval/ inside)"])
    fixes = load_corrections(corrections)
    people = load_people(data_dir, problems)
    if people is None:
        raise DataError(problems)
    images = build_image_table(data_dir, people, problems, junk)
    if problems:
        raise DataError(problems)
    raw_label = encode_label(images["mask"], images["gender"], age_band(images["age"].to_numpy()))
    changes = apply_corrections(images, fixes)
    applied = [msg for msg in changes if not msg.endswith(SKIPPED)]
    for msg in applied:
        log.info("correction %s", msg)
    if len(fixes):
        log.info("corrections: %d of %d apply to this data (%s)%s", len(applied), len(fixes), corrections,
                 "" if len(applied) == len(fixes) else "; the other ids are not in it")
    images = add_labels(images, age_filter)
    fold_warnings: list[str] = []
    images = assign_folds(images, n_folds, seed, fold_warnings) if n_folds else images.assign(fold=-1)
    if report is not None:
        report.update(people=len(people), junk_skipped=junk, corrections=changes, warnings=fold_warnings,
                      raw_per_class=np.bincount(raw_label, minlength=NUM_CLASSES).tolist())
    return images


def with_saved_folds(images: pd.DataFrame, folds: pd.DataFrame, source) -> pd.DataFrame:
    """The fold of each person as saved in a run's folds.csv (person_id, fold); the data must hold the
    same people."""
    saved = dict(zip(folds["person_id"].astype(str), folds["fold"].astype(int)))
    present = set(images["person_id"])
    added, removed = sorted(present - set(saved)), sorted(set(saved) - present)
    if added or removed:
        def some(ids):
            return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")

        raise DataError([f"{source}: the data no longer matches this run's folds: "
                         + "; ".join(p for p in (f"{len(added)} people added ({some(added)})" if added else "",
                                                 f"{len(removed)} people removed ({some(removed)})" if removed else "")
                                     if p)
                         + "; train it as a new run (--name) instead of --resume"])
    return images.assign(fold=images["person_id"].map(saved).astype(int))


def load_eval(data_dir) -> pd.DataFrame:
    """eval/info.csv in order, with the full path of each image: at least one row, unique ImageIDs, each a
    relative name inside eval/images whose file exists."""
    data_dir = Path(data_dir)
    problems: list[str] = []
    info_path = data_dir / "eval" / "info.csv"
    info = read_csv_checked(info_path, EVAL_COLUMNS, problems)
    if info is None:
        raise DataError(problems)
    if info.empty:
        raise DataError([f"{info_path}: no rows; expected one row per eval image (ImageID,ans)"])
    img_dir, paths = data_dir / "eval" / "images", []
    for i, image_id in enumerate(info["ImageID"]):
        path, problem = inside(img_dir, image_id)
        if problem is not None:
            problem = f"ImageID {image_id!r} {problem}"
        elif why := irregular(path):
            problem = f"image {shown(path)} {why}"
        if problem:
            problems.append(f"{info_path} row {i + 2}: {problem}")
        paths.append(str(path))
    for image_id, n in Counter(info["ImageID"]).items():
        if n > 1:
            problems.append(f"{info_path}: ImageID {image_id!r} appears {n} times")
    if problems:
        raise DataError(problems)
    return info.assign(path=paths)


def load_unlabeled(data_dir, unlabeled_dir: str = "") -> pd.DataFrame:
    """Unlabelled images: the eval set, or every image in a folder (junk '.' files skipped)."""
    if not unlabeled_dir:
        return load_eval(data_dir)
    folder = Path(unlabeled_dir)
    if not folder.is_dir():
        raise DataError([f"{folder}: unlabeled_dir not found"])
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
    outside = [f"{f}: resolves outside unlabeled_dir {folder}" for f in files if not within(f, folder)]
    if outside:
        raise DataError(outside)
    if not files:
        raise DataError([f"{folder}: no {'/'.join(IMAGE_EXTS)} images found"])
    return pd.DataFrame({"ImageID": [str(f.relative_to(folder)) for f in files], "path": [str(f) for f in files]})


def number(text: str) -> float:
    """The float in text, or NaN (which fails every range check)."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def load_pseudo(path: str, threshold: float = 0.0) -> pd.DataFrame | None:
    """Pseudo-labelled rows (path, label, confidence) at or above `threshold`; None without a file."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise DataError([f"{path}: pseudo_csv not found"])
    problems: list[str] = []
    df = read_csv_checked(path, ("path", "label", "confidence"), problems)
    if df is None:
        raise DataError(problems)
    for i, (label, conf) in enumerate(zip(df["label"], df["confidence"])):
        if not re.fullmatch(r"[0-9]+", label.strip()) or not 0 <= int(label) < NUM_CLASSES:
            problems.append(f"{path} row {i + 2}: label {label!r} is not a class 0..17")
        if not 0 <= number(conf) <= 1:
            problems.append(f"{path} row {i + 2}: confidence {conf!r} is not a number in [0, 1]")
    if problems:
        raise DataError(problems)
    df = df.assign(label=df["label"].astype(int), confidence=df["confidence"].astype(float))
    absent = [f"{path} row {i + 2}: image {shown(p)} {why}" for i, p in df["path"].items() if (why := irregular(p))]
    if absent:
        raise DataError(absent)
    kept = df[df["confidence"] >= threshold].reset_index(drop=True)
    log.info("pseudo labels: %d of %d rows at confidence >= %.3f from %s", len(kept), len(df), threshold, path)
    return kept
