"""The torch Dataset of face images, and a view of an image source restricted to some indices."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from src.seeds import augment_seed


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
            self.transform.reseed(augment_seed(self.seed, *key))
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
