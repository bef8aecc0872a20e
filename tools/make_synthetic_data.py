"""Draw a synthetic face-mask dataset in the exact competition layout.

    python tools/make_synthetic_data.py --out data/synthetic --train_people 300 --eval_people 100 --seed 0

Writes train/train.csv, train/images/<id>_<gender>_Asian_<age>/{mask1..5,incorrect_mask,normal}.<ext>,
eval/info.csv (ans=0), eval/images/<sha1>.jpg, and the eval truth to <out>/eval_answers.csv.
Each person is drawn from its own RNG (seed, index), so output is deterministic for a seed.

--label_noise P writes wrong labels for a share P of the train people (never the eval set), one kind each in
turn: gender flipped, age moved across a band boundary, or incorrect_mask/normal photos swapped. The photos
show the truth; <out>/label_noise.csv (id, kind, given, true) lists every flip so label finders can be scored.
"""
if __name__ == "__main__" and not __package__:  # by path, only this folder is on sys.path: rerun as a module
    import os
    import sys

    script = os.path.realpath(__file__)
    root, package = os.path.split(os.path.dirname(script))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    os.execv(sys.executable, [sys.executable, "-P", "-m", f"{package}.{os.path.basename(script)[:-3]}", *sys.argv[1:]])

import argparse
import csv
import hashlib
import os
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from src.labels import PHOTO_MASK, PHOTO_NAMES, age_band, encode_label

# Ids of the publicly reported label errors of the competition data; corrections.csv repairs them.
TRULY_MALE_LABELLED_FEMALE = ["006359", "006360", "006361", "006362", "006363", "006364"]
TRULY_FEMALE_LABELLED_MALE = ["001498-1", "004432"]
SWAPPED_INCORRECT_NORMAL = ["000020", "004418", "005227"]
NOISE_KINDS = ("gender", "age", "swap")  # injected in turn by --label_noise

SKIN = [(241, 204, 178), (226, 185, 152), (205, 160, 125), (250, 215, 190), (190, 145, 110)]
HAIR = [(20, 18, 18), (45, 32, 25), (70, 50, 35), (35, 30, 30), (95, 70, 45)]
GREY = (200, 200, 205)
MASK_COLOURS = [(245, 245, 248), (150, 190, 230), (30, 30, 35), (235, 170, 190), (160, 160, 165), (90, 140, 200)]
SHIRTS = [(60, 80, 140), (180, 40, 40), (40, 120, 70), (220, 220, 220), (30, 30, 30), (200, 160, 60)]


def mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def sample_person(rng: np.random.Generator):
    """Gender (0 male, 1 female) and age with the competition data's distributions: 61% female, age bands
    47/46/7%."""
    gender = int(rng.random() < 0.61)
    band = rng.choice(3, p=[0.47, 0.46, 0.07])
    if band == 0:
        age = int(rng.integers(18, 30))
    elif band == 1:
        # 55-59 over-represented, as in the real data where they look like 60
        age = int(rng.integers(55, 60)) if rng.random() < 0.25 else int(rng.integers(30, 60))
    else:
        age = 60
    return gender, age


def person_style(rng, gender: int, age: int):
    """Per-person appearance; cues overlap between genders and vary continuously with age."""
    greyness = float(np.clip((age - 30) / 30 + rng.normal(0, 0.12), 0, 1))
    long_hair = rng.random() < (0.8 if gender else 0.12)
    return dict(
        skin=SKIN[rng.integers(len(SKIN))],
        hair=mix(HAIR[rng.integers(len(HAIR))], GREY, greyness),
        long_hair=long_hair,
        hair_volume=float(rng.uniform(0.9, 1.25)),
        brow_w=int(rng.integers(5, 9) if gender == 0 else rng.integers(2, 5)),
        jaw=float(rng.uniform(0.9, 1.0) if gender == 0 else rng.uniform(0.78, 0.9)),
        lips=mix((170, 90, 90), (200, 40, 70), float(rng.uniform(0.4, 1.0) if gender else rng.uniform(0, 0.4))),
        stubble=gender == 0 and rng.random() < 0.35,
        wrinkles=float(np.clip((age - 25) / 35 + rng.normal(0, 0.1), 0, 1)),
        mask_colour=MASK_COLOURS[rng.integers(len(MASK_COLOURS))],
        mask_style=int(rng.integers(3)),
        shirt=SHIRTS[rng.integers(len(SHIRTS))],
        bg=tuple(int(v) for v in rng.integers(90, 240, 3)),
    )


def draw_photo(rng, style, mask_state: int, size):
    """RGB uint8 photo. mask_state: 0 worn over the nose, 1 incorrectly worn (below nose or on chin), 2 absent."""
    W, H = size
    img = Image.new("RGB", (W, H), style["bg"])
    d = ImageDraw.Draw(img)
    s = min(W / 384, H / 512) * rng.uniform(0.88, 1.12)
    cx = W / 2 + rng.normal(0, 0.04) * W
    cy = H * 0.45 + rng.normal(0, 0.03) * H
    fw, fh = 105 * s, 140 * s * style["jaw"] ** 0.3

    d.ellipse([cx - 150 * s, cy + 150 * s, cx + 150 * s, cy + 420 * s], fill=style["shirt"])  # shoulders
    d.rectangle([cx - 35 * s, cy + 90 * s, cx + 35 * s, cy + 190 * s], fill=mix(style["skin"], (0, 0, 0), 0.1))
    hv = style["hair_volume"]
    if style["long_hair"]:
        d.rounded_rectangle([cx - fw * 1.25 * hv, cy - fh * 1.1, cx + fw * 1.25 * hv, cy + fh * 1.5],
                            radius=int(60 * s), fill=style["hair"])
    d.ellipse([cx - fw * style["jaw"], cy - fh, cx + fw * style["jaw"], cy + fh], fill=style["skin"])
    top = 0.55 if style["long_hair"] else rng.uniform(0.35, 0.5)
    d.chord([cx - fw * 1.08 * hv, cy - fh * 1.18, cx + fw * 1.08 * hv, cy + fh * top], 180, 360, fill=style["hair"])

    eye_y, eye_dx = cy - 0.12 * fh, 0.42 * fw
    for sx in (-1, 1):
        ex = cx + sx * eye_dx
        d.ellipse([ex - 16 * s, eye_y - 8 * s, ex + 16 * s, eye_y + 8 * s], fill=(250, 250, 250))
        d.ellipse([ex - 7 * s, eye_y - 7 * s, ex + 7 * s, eye_y + 7 * s], fill=(40, 30, 25))
        by = eye_y - 24 * s
        d.line([ex - 20 * s, by + 3 * s, ex + 20 * s, by - 2 * s], fill=mix(style["hair"], (0, 0, 0), 0.3),
               width=max(1, int(style["brow_w"] * s)))
        for k in range(int(round(style["wrinkles"] * 3))):  # crow's feet
            wx = ex + sx * (22 + 4 * k) * s
            d.line([wx, eye_y - 6 * s + 6 * k * s, wx + sx * 10 * s, eye_y - 9 * s + 6 * k * s],
                   fill=mix(style["skin"], (60, 40, 30), 0.55), width=max(1, int(2 * s)))
    wrinkle_col = mix(style["skin"], (70, 45, 35), 0.35 + 0.4 * style["wrinkles"])
    for k in range(int(round(style["wrinkles"] * 4))):  # forehead lines
        fy = cy - 0.55 * fh + k * 9 * s
        d.arc([cx - 45 * s, fy - 6 * s, cx + 45 * s, fy + 6 * s], 200, 340, fill=wrinkle_col, width=max(1, int(2 * s)))

    nose_y = cy + 0.12 * fh
    d.polygon([(cx, eye_y + 5 * s), (cx - 13 * s, nose_y + 12 * s), (cx + 13 * s, nose_y + 12 * s)],
              fill=mix(style["skin"], (120, 70, 50), 0.25))
    mouth_y = cy + 0.45 * fh
    if style["stubble"]:
        d.chord([cx - fw * 0.75, cy + 0.15 * fh, cx + fw * 0.75, cy + fh], 0, 180,
                fill=mix(style["skin"], style["hair"], 0.35))
    d.ellipse([cx - 26 * s, mouth_y - 8 * s, cx + 26 * s, mouth_y + 8 * s], fill=style["lips"])

    if mask_state != 2:
        chin = cy + fh * 0.98
        if mask_state == 0:
            mtop = eye_y + 18 * s
        elif rng.random() < 0.5:
            mtop = nose_y + 16 * s  # below the nose
        else:
            mtop = mouth_y + 14 * s  # on the chin
        colour = style["mask_colour"]
        left, right = cx - fw * 0.98, cx + fw * 0.98
        if style["mask_style"] == 0:  # surgical, pleated
            d.rounded_rectangle([left, mtop, right, chin], radius=int(12 * s), fill=colour)
            for k in range(1, 4):
                py = mtop + (chin - mtop) * k / 4
                d.line([left + 6 * s, py, right - 6 * s, py], fill=mix(colour, (0, 0, 0), 0.25), width=max(1, int(2 * s)))
        elif style["mask_style"] == 1:  # KF94, folded with a centre seam
            mid = (mtop + chin) / 2
            d.polygon([(left, mid), (cx, mtop - 10 * s), (right, mid), (cx, chin + 8 * s)], fill=colour)
            d.line([left, mid, right, mid], fill=mix(colour, (0, 0, 0), 0.3), width=max(1, int(2 * s)))
        else:  # cloth
            d.chord([left, mtop - (chin - mtop) * 0.3, right, chin + 10 * s], 0, 180, fill=colour)
            d.rectangle([left, mtop, right, mtop + (chin - mtop) * 0.35], fill=colour)
        for sx in (-1, 1):  # ear loops
            d.line([cx + sx * fw * 0.98, mtop + 4 * s, cx + sx * fw * 1.08, eye_y], fill=mix(colour, (0, 0, 0), 0.2),
                   width=max(1, int(3 * s)))

    arr = np.asarray(img)
    rot = cv2.getRotationMatrix2D((cx, cy), float(rng.uniform(-8, 8)), 1.0)
    arr = cv2.warpAffine(arr, rot, (W, H), flags=cv2.INTER_LINEAR, borderValue=style["bg"])
    shift = rng.normal(0, 4, 3)
    arr = cv2.convertScaleAbs(arr, alpha=float(rng.uniform(0.75, 1.2)), beta=float(shift.mean()))
    blur = rng.uniform(0, 1.6)
    if blur > 0.3:
        arr = cv2.GaussianBlur(arr, (0, 0), blur)
    return arr


def save(img: np.ndarray, path: Path):
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if path.suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 90]
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")


def make_ids(n: int, rng) -> list[str]:
    """Known-error ids first (so corrections have targets), then unique random 6-digit ids."""
    known = [TRULY_MALE_LABELLED_FEMALE[0], TRULY_FEMALE_LABELLED_MALE[0], SWAPPED_INCORRECT_NORMAL[0]]
    if n >= 100:
        known = TRULY_MALE_LABELLED_FEMALE + TRULY_FEMALE_LABELLED_MALE + SWAPPED_INCORRECT_NORMAL
    known = known[:n]
    taken = {k.split("-")[0] for k in known}
    pool = [f"{i:06d}" for i in rng.permutation(np.arange(1, 7000)) if f"{i:06d}" not in taken]
    return known + pool[: n - len(known)]


def pick_noise(ids: list[str], share: float, seed: int) -> dict[str, str]:
    """person id -> injected error kind for round(share * people) people; the known-error ids keep their own.
    A separate RNG stream, so the photos are the same with and without noise."""
    rng = np.random.default_rng([seed, 4])
    known = set(TRULY_MALE_LABELLED_FEMALE + TRULY_FEMALE_LABELLED_MALE + SWAPPED_INCORRECT_NORMAL)
    pool = [pid for pid in ids if pid not in known]
    chosen = rng.permutation(pool)[: min(round(share * len(ids)), len(pool))]
    return {str(pid): NOISE_KINDS[j % len(NOISE_KINDS)] for j, pid in enumerate(chosen)}


def wrong_age(age: int, rng) -> int:
    """An age in a neighbouring band, at least 6 years off: a plain mistake, not a 59 written as 60."""
    band = age_band(age)
    if band == 0:
        return int(rng.integers(36, 50))
    if band == 2:
        return int(rng.integers(40, 53))
    return 60 if 45 <= age <= 54 else int(rng.integers(18, 25))


def make_train(out: Path, people: int, seed: int, size, label_noise: float = 0.0) -> int:
    rng = np.random.default_rng([seed, 0])
    ids = make_ids(people, rng)
    noise = pick_noise(ids, label_noise, seed)
    noise_rng = np.random.default_rng([seed, 5])
    rows, truth, n = [], [], 0
    img_root = out / "train" / "images"
    img_root.mkdir(parents=True, exist_ok=True)
    (img_root / ".DS_Store").write_bytes(b"\0Bud1junk")
    for idx, pid in enumerate(ids):
        prng = np.random.default_rng([seed, 1, idx])
        gender, age = sample_person(prng)
        if pid in TRULY_MALE_LABELLED_FEMALE:
            gender = 0
        if pid in TRULY_FEMALE_LABELLED_MALE:
            gender = 1
        written_gender = 1 - gender if pid in TRULY_MALE_LABELLED_FEMALE + TRULY_FEMALE_LABELLED_MALE else gender
        kind = noise.get(pid)
        written_gender = 1 - written_gender if kind == "gender" else written_gender
        written_age = wrong_age(age, noise_rng) if kind == "age" else age
        gname = "female" if written_gender else "male"
        if kind == "gender":
            truth.append(dict(id=pid, kind=kind, given=gname, true="female" if gender else "male"))
        elif kind == "age":
            truth.append(dict(id=pid, kind=kind, given=written_age, true=age))
        elif kind == "swap":
            truth.append(dict(id=pid, kind=kind, given="incorrect_mask", true="normal"))
        folder = f"{pid}_{gname}_Asian_{written_age}"
        rows.append(dict(id=pid, gender=gname, race="Asian", age=written_age, path=folder))
        pdir = img_root / folder
        pdir.mkdir(exist_ok=True)
        style = person_style(prng, gender, age)
        exts = prng.choice([".jpg", ".jpeg", ".png"], p=[0.8, 0.12, 0.08])
        mixed = prng.random() < 0.1
        for name in PHOTO_NAMES:
            state = PHOTO_MASK[name]
            if (pid in SWAPPED_INCORRECT_NORMAL or kind == "swap") and state in (1, 2):
                state = 3 - state
            ext = prng.choice([".jpg", ".jpeg", ".png"]) if mixed else exts
            save(draw_photo(prng, style, state, size), pdir / f"{name}{ext}")
            n += 1
        if prng.random() < 0.08:
            (pdir / f"._mask1{exts}").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    write_csv(out / "train" / "train.csv", ["id", "gender", "race", "age", "path"], rows)
    if label_noise > 0:
        write_csv(out / "label_noise.csv", ["id", "kind", "given", "true"], truth)
    return n


def make_eval(out: Path, people: int, seed: int, size) -> int:
    img_root = out / "eval" / "images"
    img_root.mkdir(parents=True, exist_ok=True)
    order_rng = np.random.default_rng([seed, 2])
    items = []
    for idx in range(people):
        prng = np.random.default_rng([seed, 3, idx])
        gender, age = sample_person(prng)
        style = person_style(prng, gender, age)
        for k, name in enumerate(PHOTO_NAMES):
            state = PHOTO_MASK[name]
            image_id = hashlib.sha1(f"{seed}-{idx}-{k}".encode()).hexdigest() + ".jpg"
            save(draw_photo(prng, style, state, size), img_root / image_id)
            items.append((image_id, encode_label(state, gender, age_band(age))))
    items = [items[i] for i in order_rng.permutation(len(items))]
    write_csv(out / "eval" / "info.csv", ["ImageID", "ans"], [dict(ImageID=i, ans=0) for i, _ in items])
    write_csv(out / "eval_answers.csv", ["ImageID", "ans"], [dict(ImageID=i, ans=a) for i, a in items])
    return len(items)


def write_csv(path: Path, fields, rows):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def parse_size(text: str):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 384x512 (WxH), got {text!r}")
    return w, h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--train_people", type=int, default=300)
    p.add_argument("--eval_people", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=parse_size, default=(384, 512), help="WxH, default 384x512")
    p.add_argument("--label_noise", type=float, default=0.0,
                   help="share of train people given a wrong label (truth in <out>/label_noise.csv); default 0")
    a = p.parse_args(argv)
    if not 0 <= a.label_noise <= 1:
        p.error(f"--label_noise must be from 0 to 1, got {a.label_noise}")
    if (a.out / "train").exists() or (a.out / "eval").exists():
        p.error(f"{a.out} already holds a dataset; pick a new --out")
    t0 = time.perf_counter()
    n_train = make_train(a.out, a.train_people, a.seed, a.size, a.label_noise)
    n_eval = make_eval(a.out, a.eval_people, a.seed, a.size)
    dt = time.perf_counter() - t0
    print(f"wrote {n_train} train and {n_eval} eval images to {a.out} in {dt:.1f}s "
          f"({(n_train + n_eval) / dt:.0f} img/s)")


if __name__ == "__main__":
    main()
