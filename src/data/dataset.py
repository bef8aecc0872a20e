"""The torch Dataset of face images, and a view of an image source restricted to some indices."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from src.labels import encode_target
from src.seeds import augment_seed


class FaceDataset(Dataset):
    """Yields (image tensor, target, index); the target is the label (-1 for unlabelled images), or with `ages`
    the training target that also holds the exact age (labels.encode_target).

    `images` is any indexable source of RGB uint8 arrays (FileImages or a cache); `transform`
    maps (image, label) to a tensor. The augmentation RNG is reseeded once per (epoch, worker)
    from `seed`; `epoch` lives in shared memory so persistent workers see set_epoch().
    """

    def __init__(self, images, labels=None, transform=None, seed: int = 0, ages=None):
        self.images = images
        self.labels = np.full(len(images), -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
        self.targets = self.labels if ages is None else encode_target(self.labels, np.asarray(ages, np.int64))
        self.transform, self.seed = transform, seed
        self.epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._seeded_for = None

    def set_epoch(self, epoch: int):
        self.epoch.fill_(epoch)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img, label, target = self.images[i], int(self.labels[i]), int(self.targets[i])
        if self.transform is None:
            return img, target, i
        info = torch.utils.data.get_worker_info()
        key = (int(self.epoch), info.id if info else 0)
        if key != self._seeded_for and hasattr(self.transform, "reseed"):
            self.transform.reseed(augment_seed(self.seed, *key))
            self._seeded_for = key
        return self.transform(img, label), target, i


class Take:
    """A view of an image source restricted to some indices."""

    def __init__(self, images, indices):
        self.images, self.indices = images, np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.images[int(self.indices[i])]
