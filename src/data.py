"""Dataset parsing, label encoding, corrections, the age filter, person-level folds and the torch Dataset."""
from __future__ import annotations

import io
import json
import logging
import re
import sys
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import Dataset

from src.labels import (AGE_NAMES, CLASS_NAMES, GENDER_NAMES, MASK_NAMES, NUM_CLASSES, PHOTO_MASK,  # noqa: F401
                        PHOTO_NAMES, age_band, decode_label, encode_label)

log = logging.getLogger("maskcls")

CORRECTION_FIXES = ("gender_male", "gender_female", "swap_incorrect_normal")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TRAIN_COLUMNS = ("id", "gender", "race", "age", "path")
EVAL_COLUMNS = ("ImageID", "ans")
GENDERS = {"male": 0, "female": 1}
AGE_RANGE = (0, 120)
MAX_IMAGE_PIXELS = 50_000_000  # default of the max_image_pixels setting: larger images are refused unread

cv2.setNumThreads(1)  # loader workers parallelise across images; OpenCV threads would only contend


class DataError(Exception):
    """Bad input: each problem names the file it is in and what was expected."""

    def __init__(self, problems: list[str] | str):
        if isinstance(problems, str):
            problems = [worker_problem(problems)]
        self.problems = list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))

    def __reduce__(self):  # pickles as its problem list, not as the joined message
        return DataError, (self.problems,)


def worker_problem(text: str) -> str:
    """A DataLoader worker re-raises DataError(formatted traceback); keep only the original problem."""
    if "Traceback" not in text:
        return text
    tail = text.rstrip().rsplit("DataError:", 1)[-1]
    return "; ".join(line.strip().removeprefix("- ") for line in tail.splitlines() if line.strip())


def image_header(data: bytes, path, max_pixels: int) -> str | None:
    """Problems visible without decoding: unreadable header, too many pixels, a JPEG cut short."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        return f"{path}: refused, too many pixels to decode safely ({e})"
    except Exception as e:  # PIL raises many types for bad headers
        return f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})"
    if width * height > max_pixels:
        return (f"{path}: {width}x{height} is {width * height:,} pixels, more than max_image_pixels "
                f"{max_pixels:,}; refused before decoding")
    if width < 8 or height < 8:
        return f"{path}: image is only {width}x{height}"
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-65536:]:  # phones may append data after the marker
        return f"{path}: truncated JPEG (no end-of-image marker)"
    return None


def read_rgb(path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode an image file to RGB uint8 HxWx3 after checking its header, or raise DataError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError([f"{path}: cannot be read ({e.strerror})"]) from None
    problem = image_header(data, path, max_pixels)
    if problem:
        raise DataError([problem])
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError([f"{path}: unreadable or corrupt image"])
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def verify_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Header checks, then a full PIL decode (strict about truncation); a problem or None."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"{path}: cannot be read ({e.strerror})"
    problem = image_header(data, path, max_pixels)
    if problem:
        return problem
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # PIL raises many types for bad files
        return f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})"
    return None


def relative_name_problem(name: str) -> str | None:
    """Why a name from a data file is not a plain relative path (absolute, '..', empty part), or None."""
    parts = re.split(r"[\\/]", name)
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "must be a relative name, not absolute or empty"
    if "\x00" in name:
        return "must not contain a NUL character"
    if any(p in ("", ".", "..") for p in parts):
        return "must not contain '..', '.' or an empty part"
    return None


def inside(root: Path, name: str) -> tuple[Path | None, str | None]:
    """root/name if it is a plain relative name that resolves (symlinks followed) inside root."""
    problem = relative_name_problem(name)
    if problem:
        return None, problem
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        return None, f"resolves outside {root}"
    return path, None


def list_person_photos(folder: Path, problems: list[str], junk: list[str]) -> dict[str, Path]:
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
    missing = [n for n in PHOTO_NAMES if n not in found]
    if missing:
        problems.append(f"{folder}: missing {', '.join(missing)} (a person folder needs all seven photos)")
    return found


def read_csv_checked(path: Path, columns, problems: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
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
            if fix not in CORRECTION_FIXES:
                problems.append(f"{p} row {i + 2}: fix {fix!r} is not one of {', '.join(CORRECTION_FIXES)}")
    if problems:
        raise DataError(problems)
    return df


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
        real = folder.resolve()
        if real in owners:
            problems.append(f"{data_dir / 'train' / 'train.csv'} row {i + 2} (id {p['id']}): folder {p['path']!r} "
                            f"is also the folder of id {owners[real]}")
            continue
        owners[real] = p["id"]
        if not folder.is_dir():
            problems.append(f"{folder}: person folder listed in train.csv (id {p['id']}) not found")
            continue
        photos = list_person_photos(folder, problems, junk)
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
            changes.append(f"{c['id']}: not in this dataset, {c['fix']} skipped")
            continue
        if c["fix"] in ("gender_male", "gender_female"):
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


def assign_folds(images: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """StratifiedGroupKFold: a person's seven photos share one fold; strata are gender x true age band.
    Every fold must be able to hold a person of each stratum present."""
    strata = images["gender"].to_numpy() * 3 + age_band(images["age"].to_numpy())
    people = pd.Series(strata, index=images["person_id"]).groupby(level=0).first().value_counts()
    if people.min() < n_folds:
        s, m = int(people.idxmin()), int(people.min())
        fix = f"use --n_folds {m} or fewer" if m >= 2 else "this data is too small for stratified K-fold"
        raise DataError([f"n_folds {n_folds} does not fit the data: the smallest stratum ({GENDER_NAMES[s // 3]}, "
                         f"age {AGE_NAMES[s % 3]}) has {m} people, and every fold needs one of each; {fix}"])
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    images["fold"] = -1
    for k, (_, val_idx) in enumerate(splitter.split(images, strata, groups=images["person_id"])):
        images.loc[images.index[val_idx], "fold"] = k
    return images


def load_train(data_dir, corrections: str = "none", age_filter: int = 60, n_folds: int | None = None, seed: int = 42,
               report: dict | None = None) -> pd.DataFrame:
    """The training image table: path, person_id, photo, mask, gender, age, label, train_label, fold
    (fold -1 when n_folds is None: callers that only need the images).

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
    for msg in changes:
        log.info("correction %s", msg)
    images = add_labels(images, age_filter)
    images = assign_folds(images, n_folds, seed) if n_folds else images.assign(fold=-1)
    if report is not None:
        report.update(people=len(people), junk_skipped=junk, corrections=changes,
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
        if problem is None and not path.is_file():
            problem = f"image {path} not found"
        elif problem is not None:
            problem = f"ImageID {image_id!r} {problem}"
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
    outside = [f"{f}: resolves outside unlabeled_dir {folder}" for f in files
               if not f.resolve().is_relative_to(folder.resolve())]
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
    absent = [f"{path} row {i + 2}: image {p} not found" for i, p in df["path"].items() if not Path(p).is_file()]
    if absent:
        raise DataError(absent)
    kept = df[df["confidence"] >= threshold].reset_index(drop=True)
    log.info("pseudo labels: %d of %d rows at confidence >= %.3f from %s", len(kept), len(df), threshold, path)
    return kept


def check_data(cfg) -> dict:
    """Full validation (every image decoded) and a JSON-able summary; problems listed, not raised."""
    report: dict = {"data_dir": str(cfg.data_dir), "problems": []}
    problems = report["problems"]
    try:
        images = load_train(cfg.data_dir, cfg.corrections, cfg.age_filter, cfg.n_folds, cfg.seed, report)
    except DataError as e:
        problems.extend(e.problems)
        images = None
    try:
        evals = load_eval(cfg.data_dir)
        report["eval_images"] = len(evals)
        problems.extend(p for p in (verify_image(Path(f), cfg.max_image_pixels) for f in evals["path"]) if p)
    except DataError as e:
        problems.extend(e.problems)
    if images is not None:
        problems.extend(p for p in (verify_image(Path(f), cfg.max_image_pixels) for f in images["path"]) if p)
        report["train_images"] = len(images)
        report["per_class"] = {
            "raw": dict(enumerate(report.pop("raw_per_class"))),
            "corrected": per_class(images["label"]),
            "train_labels": per_class(images["train_label"]),
        }
        report["folds"] = [dict(fold=k, people=int(g["person_id"].nunique()), images=len(g),
                                per_class=per_class(g["label"])) for k, g in images.groupby("fold")]
        owners = images.groupby("person_id")["fold"].nunique()
        report["folds_disjoint"] = bool((owners == 1).all())
    report["junk_skipped"] = report.get("junk_skipped", [])
    return report


def print_check_data(cfg) -> int:
    """check_data as JSON on stdout, each problem on stderr; the exit code (1 when there are problems)."""
    report = check_data(cfg)
    print(json.dumps(report, indent=2))
    for problem in report["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if report["problems"] else 0


def per_class(labels) -> dict[int, int]:
    return dict(enumerate(np.bincount(np.asarray(labels, dtype=int), minlength=NUM_CLASSES).tolist()))


class FileImages:
    """Images decoded from disk on demand (header checked first), resized to `size` (H, W) when given."""

    def __init__(self, paths, size: tuple[int, int] | None = None, max_pixels: int = MAX_IMAGE_PIXELS):
        self.paths, self.size, self.max_pixels = list(paths), size, max_pixels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i) -> np.ndarray:
        img = read_rgb(self.paths[i], self.max_pixels)
        if self.size is not None and img.shape[:2] != tuple(self.size):
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return img


class FaceDataset(Dataset):
    """Yields (image tensor, label, index); label is -1 for unlabelled images.

    `images` is any indexable source of RGB uint8 arrays (FileImages or a cache); `transform`
    maps (image, label) to a tensor. The augmentation RNG is reseeded once per (epoch, worker)
    from `seed`; `epoch` lives in shared memory so persistent workers see set_epoch().
    """

    def __init__(self, images, labels=None, transform=None, seed: int = 0):
        self.images = images
        self.labels = np.full(len(images), -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        self.transform, self.seed = transform, seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._seeded_for = None

    def set_epoch(self, epoch: int):
        self.epoch.fill_(epoch)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img, label = self.images[i], int(self.labels[i])
        if self.transform is None:
            return img, label, i
        info = torch.utils.data.get_worker_info()
        key = (int(self.epoch), info.id if info else 0)
        if key != self._seeded_for and hasattr(self.transform, "reseed"):
            self.transform.reseed((self.seed * 1_000_003 + key[0] * 10_007 + key[1]) % 2**31)
            self._seeded_for = key
        return self.transform(img, label), label, i


class Take:
    """A view of an image source restricted to some indices."""

    def __init__(self, images, indices):
        self.images, self.indices = images, np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.images[int(self.indices[i])]
