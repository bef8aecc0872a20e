"""src/data/samplers.py: the weighted sampler, alone and split between processes."""
import numpy as np

from src.data.samplers import DistributedWeightedSampler, train_sampler


def test_weighted_sampler_draws_rare_classes_as_often_as_common_ones():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = train_sampler("weighted", labels, 1, 0, seed=0)
    drawn = labels[list(sampler)]
    assert 0.35 < drawn.mean() < 0.65
    split = [list(DistributedWeightedSampler(np.ones(10), 2, r, seed=3)) for r in (0, 1)]
    whole = list(DistributedWeightedSampler(np.ones(10), 1, 0, seed=3))
    assert sorted(split[0] + split[1]) == sorted(whole)
