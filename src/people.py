"""People, not photos. The eval set holds seven photos of each person, five with the mask worn, one worn
incorrectly and one without, under shuffled names; the person's gender and age band are the same on all seven.
`group_photos` finds the people again from features of each photo (its appearance, and what the model says of its
gender and age), clustering into groups of seven with the 5/1/1 layout as a constraint; `decide_people` then
decides each person once: gender and age band from the group's summed log-probabilities (plus the decision
offsets' task terms), and the masks by the assignment of five worn, one incorrect and one none that maximises the
group's summed log-probability. A photo of no group is decided alone."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.neighbors import NearestNeighbors

from src.decision import decide, fast_macro_f1, log_probs, offsets_of
from src.labels import TASK_SIZES, encode_label, task_probabilities

PHOTOS_PER_PERSON = 7
MASK_LAYOUT = np.array([5, 1, 1])  # photos of each mask state (worn, incorrect, not worn) of one person
SLOTS = np.repeat(np.arange(3), MASK_LAYOUT)  # the mask state of each of a person's seven slots
NEIGHBOURS = 24  # nearest photos each photo may be joined to
METRIC_COMPONENTS = 8  # dimensions of the person metric (bench/people.py measured 4-16 on the generator's data)


@dataclass(frozen=True)
class Grouping:
    """Each photo's group (-1: decided alone), how many groups of seven were formed, and how many photos were left
    single; `fallback` says why nothing was grouped, where that is so."""
    groups: np.ndarray
    formed: int
    single: int
    fallback: str | None = None
    seconds: float = 0.0  # wall time of finding the groups (reading the photos' appearance included)

    def record(self) -> dict:
        """What settings files record of the grouping."""
        return dict(formed=self.formed, single=self.single, fallback=self.fallback, seconds=round(self.seconds, 2))

    def summary(self) -> str:
        if self.fallback:
            return f"group people: none ({self.fallback}); every photo decided alone"
        return (f"group people: {self.formed} groups of seven formed, {self.single} of {len(self.groups)} photos "
                f"left single (decided alone), in {self.seconds:.1f} s")


def ungrouped(n: int, why: str) -> Grouping:
    return Grouping(np.full(n, -1), 0, n, why)


@dataclass(frozen=True)
class PersonMetric:
    """An affine map of appearance features (x @ matrix + offset) under which the photos of one person lie close
    and different people far apart: scikit-learn's linear discriminant analysis with shrinkage, fitted on
    photos whose people are known (the training photos)."""
    matrix: np.ndarray
    offset: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.matrix + self.offset

    @classmethod
    def fit(cls, x: np.ndarray, people: np.ndarray, components: int = METRIC_COMPONENTS) -> PersonMetric:
        usable = np.isfinite(x).all(1)
        x, people = np.asarray(x, dtype=np.float64)[usable], np.asarray(people)[usable]
        k = min(components, len(np.unique(people)) - 1, x.shape[1])  # what LDA can give
        lda = LinearDiscriminantAnalysis(n_components=k, solver="eigen", shrinkage="auto").fit(x, people)
        offset = lda.transform(np.zeros((1, x.shape[1])))[0]
        return cls(lda.transform(np.eye(x.shape[1])) - offset, offset)


def photo_features(embedded: np.ndarray, probs: np.ndarray, model_weight: float = 0.0) -> np.ndarray:
    """Each photo's features for finding its person: its appearance under the person metric and, weighted by
    `model_weight`, the model's log-probabilities of gender and age (the same on a person's seven photos; the mask
    is not), each column scaled to unit spread."""
    _, gender, age = task_probabilities(np.asarray(probs, dtype=np.float64))
    model = log_probs(np.concatenate([gender, age], axis=1))
    scale = lambda x: x / np.where(np.nanstd(x, axis=0) > 0, np.nanstd(x, axis=0), 1.0)  # noqa: E731
    parts = [scale(np.asarray(embedded, dtype=np.float64))]
    if model_weight:
        parts.append(model_weight * scale(model))
    return np.concatenate(parts, axis=1)


def group_photos(features: np.ndarray, probs: np.ndarray) -> Grouping:
    """Groups of seven photos, each holding five photos the model calls worn, one incorrect and one not worn.

    Photos are joined along the edges of their nearest-neighbour graph, shortest first (single linkage), wherever
    the joined group stays within seven photos and the 5/1/1 layout of the model's mask calls; then incomplete
    groups are joined by the distance of their centres, nearest first, under the same rule. A group that ends
    with fewer than seven photos is dissolved: its photos are decided alone. Data whose photo count is not a
    multiple of seven is not grouped."""
    n = len(features)
    if n == 0 or n % PHOTOS_PER_PERSON:
        return ungrouped(n, f"{n} photos are not a multiple of {PHOTOS_PER_PERSON}, so they are not whole people")
    usable = np.isfinite(features).all(1)
    masks = task_probabilities(np.asarray(probs))[0].argmax(1)
    parts = Components(masks)
    idx = np.flatnonzero(usable)
    if len(idx) > 1:
        k = min(NEIGHBOURS, len(idx) - 1)
        dist, nbr = NearestNeighbors(n_neighbors=k + 1).fit(features[idx]).kneighbors(features[idx])
        order = np.argsort(dist[:, 1:], axis=None, kind="stable")
        rows, cols = np.unravel_index(order, dist[:, 1:].shape)
        for a, b in zip(idx[rows], idx[nbr[:, 1:][rows, cols]]):
            parts.join(a, b)
        join_incomplete(parts, features)
    groups = parts.labels(PHOTOS_PER_PERSON)
    formed = len(np.unique(groups[groups >= 0]))
    return Grouping(groups, formed, int((groups < 0).sum()))


class Components:
    """Union-find over photos, each part knowing its size and its count of each mask call."""

    def __init__(self, masks: np.ndarray):
        self.parent = np.arange(len(masks))
        self.counts = np.eye(3, dtype=int)[masks]

    def root(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: int, b: int) -> bool:
        ra, rb = self.root(a), self.root(b)
        if ra == rb or (self.counts[ra] + self.counts[rb] > MASK_LAYOUT).any():
            return False
        self.parent[rb] = ra
        self.counts[ra] += self.counts[rb]
        return True

    def roots(self) -> np.ndarray:
        return np.array([self.root(a) for a in range(len(self.parent))])

    def labels(self, size: int) -> np.ndarray:
        """A group number for each photo of a part of exactly `size` photos, -1 for the others."""
        roots = self.roots()
        whole = [r for r in np.unique(roots) if self.counts[r].sum() == size]
        number = {r: i for i, r in enumerate(whole)}
        return np.array([number.get(r, -1) for r in roots])


def join_incomplete(parts: Components, features: np.ndarray):
    """Join the parts short of seven photos by the distance between their centres, nearest pair first, while the
    layout allows it; a join moves a centre, so the pairs are measured again after each round of joins."""
    usable = np.isfinite(features).all(1)
    while True:
        roots = parts.roots()
        short_roots, inverse = np.unique(roots, return_inverse=True)
        keep = (parts.counts[short_roots].sum(1) < PHOTOS_PER_PERSON)
        keep &= np.bincount(inverse, weights=~usable, minlength=len(short_roots)) == 0
        short = short_roots[keep]
        if len(short) < 2:
            return
        position = {r: i for i, r in enumerate(short)}
        member = np.array([position.get(r, -1) for r in roots])
        sums = np.zeros((len(short), features.shape[1]))
        np.add.at(sums, member[member >= 0], features[member >= 0])
        centres = sums / np.bincount(member[member >= 0], minlength=len(short))[:, None]
        gaps = cdist(centres, centres)
        gaps[np.tril_indices(len(short))] = np.inf
        taken = np.zeros(len(short), dtype=bool)
        joined = False
        for flat in np.argsort(gaps, axis=None)[:len(short) * (len(short) - 1) // 2]:
            i, j = divmod(int(flat), len(short))
            if not (taken[i] or taken[j]) and parts.join(short[i], short[j]):
                taken[[i, j]] = True
                joined = True
        if not joined:
            return


def task_terms(offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The gender and age terms of additive class offsets (class = mask + gender + age term, as src/decision.py
    fits them): within a task only their differences matter. Zeros without offsets."""
    if offsets is None:
        return np.zeros(TASK_SIZES[1]), np.zeros(TASK_SIZES[2])
    offsets = np.asarray(offsets, dtype=np.float64)
    gender = offsets[[encode_label(0, g, 0) for g in range(TASK_SIZES[1])]]
    age = offsets[[encode_label(0, 0, a) for a in range(TASK_SIZES[2])]]
    return gender - gender[0], age - age[0]


def decide_people(probs: np.ndarray, groups: np.ndarray, offsets: np.ndarray | None,
                  photo_offsets: np.ndarray | None = None) -> np.ndarray:
    """The class of every photo: a grouped photo by its person's decision under `offsets`, a single one by
    `decide` alone under `photo_offsets` (default: the same offsets)."""
    probs = np.asarray(probs, dtype=np.float64)
    out = decide(probs, offsets if photo_offsets is None else photo_offsets)
    mask, gender, age = (log_probs(p) for p in task_probabilities(probs))
    gender_terms, age_terms = task_terms(offsets)
    for g in np.unique(groups[groups >= 0]):
        rows = np.flatnonzero(groups == g)
        person_gender = int((gender[rows].sum(0) / len(rows) + gender_terms).argmax())
        person_age = int((age[rows].sum(0) / len(rows) + age_terms).argmax())
        photo, slot = linear_sum_assignment(-mask[rows][:, SLOTS])  # five worn, one incorrect, one none
        out[rows[photo]] = encode_label(SLOTS[slot], person_gender, person_age)
    return out


def purity_completeness(groups: np.ndarray, people: np.ndarray) -> dict:
    """How the groups match the known people, over the grouped photos: purity is the share of grouped photos
    whose group's majority person is theirs; completeness the share of people whose seven photos form one group;
    grouped the share of photos in any group."""
    grouped = groups >= 0
    if not grouped.any():
        return dict(grouped=0.0, purity=0.0, completeness=0.0)
    majority = 0
    for g in np.unique(groups[grouped]):
        _, counts = np.unique(people[groups == g], return_counts=True)
        majority += counts.max()
    whole = sum(1 for p in np.unique(people) if len(np.unique(groups[people == p])) == 1
                and groups[people == p][0] >= 0 and (groups == groups[people == p][0]).sum() == (people == p).sum())
    return dict(grouped=float(grouped.mean()), purity=majority / grouped.sum(),
                completeness=whole / len(np.unique(people)))



def person_offsets(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The plug-in offsets (src/decision.py's rule) of the decisions made per person: -log F1 of each task value
    over the grouped argmax decisions of `probs` against `labels`."""
    return offsets_of(decide_people(probs, groups, None), labels)


def cross_fitted_people(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each fold's rows decided per person with offsets fitted on the other folds' rows only."""
    out = np.empty(len(labels), dtype=np.int64)
    for k in np.unique(folds):
        own = folds == k  # groups never cross folds: oof_groups finds them fold by fold
        fitted = offsets_of(decide_people(probs[~own], groups[~own], None), labels[~own])
        out[own] = decide_people(probs[own], groups[own], fitted)
    return out


def oof_embedding(thumbs: np.ndarray, people: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each out-of-fold row's appearance under a person metric fitted on the other folds' people only, so that
    no row is placed by a metric that saw its own person."""
    out = np.zeros((len(thumbs), METRIC_COMPONENTS))
    for k in np.unique(folds):
        own = folds == k
        embedded = PersonMetric.fit(thumbs[~own], people[~own])(thumbs[own])
        out[own, :embedded.shape[1]] = embedded  # NaN stays NaN: that photo joins no group
    return out


def oof_groups(embedded: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The groups of the out-of-fold rows, found fold by fold (a person's rows share a fold) as eval's are."""
    groups = np.full(len(probs), -1)
    for k in np.unique(folds):
        own = np.flatnonzero(folds == k)
        found = group_photos(photo_features(embedded[own], probs[own]), probs[own]).groups
        groups[own] = np.where(found >= 0, found + groups.max() + 1, -1)
    return groups


@dataclass(frozen=True)
class PeopleCV:
    """The grouped CV of a run's out-of-fold rows, next to the per-photo one."""
    groups: np.ndarray
    cv_argmax: float
    crossed: np.ndarray  # each row's class, decided per person by offsets fitted on the other folds
    cv_tuned: float  # macro-F1 of `crossed`
    offsets: np.ndarray  # person offsets fitted on every row: what infer applies to eval's groups
    clustering: dict  # grouped share, purity and completeness against the known people

    def record(self) -> dict:
        return dict(cv_f1_grouped=self.cv_argmax, cv_f1_grouped_tuned=self.cv_tuned, grouping=self.clustering)


def people_cv(probs: np.ndarray, labels: np.ndarray, folds: np.ndarray, embedded: np.ndarray,
              people: np.ndarray) -> PeopleCV:
    """Group the out-of-fold rows by clustering (the known `people` only score the clustering afterwards), then
    decide each group once: argmax, cross-fitted tuned, and the offsets fitted on every row."""
    groups = oof_groups(embedded, probs, folds)
    clustering = purity_completeness(groups, people) | dict(formed=len(np.unique(groups[groups >= 0])),
                                                            single=int((groups < 0).sum()))
    crossed = cross_fitted_people(probs, labels, folds, groups)
    return PeopleCV(groups, fast_macro_f1(labels, decide_people(probs, groups, None)), crossed,
                    fast_macro_f1(labels, crossed), person_offsets(probs, labels, groups), clustering)
