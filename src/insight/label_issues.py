"""Which training labels look wrong: cleanlab on the per-task marginals of out-of-fold probabilities.

Gender and age belong to a person, so each person's images are averaged before cleanlab ranks them; the
mask state belongs to an image. An incorrect_mask/normal pair swapped within one person is an issue of its
own (`swap`), replacing the two single-image mask issues it explains. Every issue has a score in [0, 1],
comparable across kinds: the probability mass against the given label (for a swap, the posterior that the
pair is swapped). Rows come most suspicious first.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from src.insight.oof import task_labels, task_probs
from src.labels import PHOTO_MASK, PROB_COLUMNS, TASK_NAMES

ISSUE_COLUMNS = ["id", "file", "issue", "given", "suggested", "score"]
ISSUE_KINDS = ("gender", "age", "mask", "swap")
SWAP_PHOTOS = ("incorrect_mask", "normal")
FIX_OF = {("gender", "male"): "gender_male", ("gender", "female"): "gender_female",
          ("swap", "swapped"): "swap_incorrect_normal"}  # issue -> corrections.csv fix; age and mask have none


def cleanlab_flags(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flagged by cleanlab's confident-learning filter, suspicion = 1 - self-confidence)."""
    probs = probs / probs.sum(1, keepdims=True)  # OOF files round each probability to 6 decimals
    with warnings.catch_warnings():  # small classes (few 60+ people) are expected, not news
        warnings.filterwarnings("ignore", message="May not flag all label issues")
        flagged = find_label_issues(labels, probs, n_jobs=1)
    return flagged, 1 - get_label_quality_scores(labels, probs, method="self_confidence")


def suggestion(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    """The most likely value other than the given one."""
    others = probs.copy()
    others[np.arange(len(given)), given] = -1
    return others.argmax(1)


def person_issues(images: pd.DataFrame, probs: dict, labels: dict, task: str) -> pd.DataFrame:
    """Issues of a person-level task from the mean of each person's image probabilities."""
    names = TASK_NAMES[task]
    frame = pd.DataFrame(probs[task]).assign(person_id=images["person_id"].to_numpy(), given=labels[task])
    people = frame.groupby("person_id", sort=True)
    mean = people[list(range(len(names)))].mean().to_numpy()
    given = people["given"].first().to_numpy()
    flagged, score = cleanlab_flags(given, mean)
    suggested = suggestion(mean, given)
    ages = images.groupby("person_id", sort=True)["age"].first() if "age" in images else None
    rows = [dict(id=pid, file="", issue=task,
                 given=names[given[i]] + (f" (age {ages.iloc[i]})" if task == "age" and ages is not None else ""),
                 suggested=names[suggested[i]], score=score[i])
            for i, pid in enumerate(people["given"].first().index) if flagged[i]]
    return pd.DataFrame(rows, columns=ISSUE_COLUMNS)


def swap_scores(images: pd.DataFrame, mask_probs: np.ndarray, mask_labels: np.ndarray) -> pd.DataFrame:
    """Per person: `score`, the posterior that the incorrect_mask and normal photos carry each other's label
    (p(a shows b's label) p(b shows a's label) against p(a shows its own) p(b shows its own)), and `named`,
    whether the labels follow the file names (False: corrections.csv swapped them already)."""
    at = {photo: images.index[images["photo"].to_numpy() == photo] for photo in SWAP_PHOTOS}
    pos = pd.Series(np.arange(len(images)), index=images.index)
    a = images.loc[at["incorrect_mask"]].set_index("person_id").assign(i=pos[at["incorrect_mask"]].to_numpy())
    b = images.loc[at["normal"]].set_index("person_id").assign(j=pos[at["normal"]].to_numpy())
    pairs = a[["i"]].join(b[["j"]], how="inner")
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    li, lj = mask_labels[i], mask_labels[j]
    swapped = mask_probs[i, lj] * mask_probs[j, li]
    kept = mask_probs[i, li] * mask_probs[j, lj]
    return pd.DataFrame(dict(score=np.where(li != lj, swapped / np.maximum(swapped + kept, 1e-12), 0.0),
                             named=li == PHOTO_MASK["incorrect_mask"]), index=pairs.index)


def find_issues(images: pd.DataFrame) -> pd.DataFrame:
    """images: a row per training image with person_id, photo, path, label (the 18-class label trained on,
    corrections applied), p0..p17 (its out-of-fold probabilities) and optionally age.
    Returns ISSUE_COLUMNS, most suspicious first."""
    images = images.reset_index(drop=True)
    probs, labels = task_probs(images[PROB_COLUMNS].to_numpy()), task_labels(images["label"])
    parts = [person_issues(images, probs, labels, "gender"), person_issues(images, probs, labels, "age")]

    flagged, score = cleanlab_flags(labels["mask"], probs["mask"])
    swap = swap_scores(images, probs["mask"], labels["mask"])
    pair_flagged = pd.Series(flagged).groupby(images["person_id"].where(images["photo"].isin(SWAP_PHOTOS))).any()
    swapped = swap[(swap["score"] > 0.5) & pair_flagged.reindex(swap.index, fill_value=False)]
    # a pair corrections.csv swapped already and that looks swapped back: the correction itself is suspect
    parts.append(pd.DataFrame(dict(id=swapped.index, file="", issue="swap",
                                   given=np.where(swapped["named"], "as named", "swapped"),
                                   suggested=np.where(swapped["named"], "swapped", "as named"),
                                   score=swapped["score"].to_numpy()), columns=ISSUE_COLUMNS))
    explained = images["person_id"].isin(swapped.index) & images["photo"].isin(SWAP_PHOTOS)
    single = np.flatnonzero(flagged & ~explained.to_numpy())
    suggested = suggestion(probs["mask"], labels["mask"])
    names = TASK_NAMES["mask"]
    parts.append(pd.DataFrame(dict(id=images["person_id"].to_numpy()[single], file=images["path"].to_numpy()[single],
                                   issue="mask", given=[names[v] for v in labels["mask"][single]],
                                   suggested=[names[v] for v in suggested[single]], score=score[single]),
                              columns=ISSUE_COLUMNS))
    issues = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    return issues.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def corrections_rows(issues: pd.DataFrame, top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows in corrections.csv's format id,fix,note for the top issues that have a fix kind, the top issues
    that have none: age and single-image mask issues, to be fixed by hand)."""
    head = issues.head(top).reset_index(drop=True)
    fixes = [FIX_OF.get((r.issue, r.suggested)) for r in head.itertuples()]
    keep = np.array([f is not None for f in fixes], dtype=bool)
    rows = pd.DataFrame(dict(id=head["id"][keep], fix=[f for f in fixes if f is not None],
                             note=[f"find_label_issues rank {i + 1}: {r.issue} {r.given} -> {r.suggested}, "
                                   f"score {r.score:.3f}" for i, r in head[keep].iterrows()]))
    return rows, head[~keep]
