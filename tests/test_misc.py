"""torch_utils.misc: the training sampler's index order (exact resume depends on it) and the constant cache."""
import itertools

import numpy as np
import pytest
import torch

from torch_utils import misc

# The first 40 indices for a dataset of 11 items, as StyleGAN2-ADA's sampler yields them (recorded from it).
RECORDED = [
    (dict(rank=0, num_replicas=1, seed=0),
     [4, 9, 2, 10, 6, 1, 7, 8, 3, 2, 5, 4, 10, 8, 6, 2, 7, 1, 3, 10, 9, 8, 7, 2, 4, 6, 0, 10, 1, 2, 7, 8, 4, 6, 5, 9,
      3, 10, 1, 4]),
    (dict(rank=1, num_replicas=3, seed=7, window_size=0.3),
     [5, 1, 3, 5, 1, 10, 5, 0, 2, 8, 7, 0, 9, 5, 1, 10, 8, 5, 1, 7, 3, 0, 7, 1, 4, 7, 6, 1, 7, 10, 2, 4, 3, 0, 2, 8,
      0, 2, 1, 0]),
    (dict(rank=0, num_replicas=2, shuffle=False),
     [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9] * 3 + [0, 2, 4, 6, 8, 10, 1]),
]


@pytest.mark.parametrize('kwargs,expected', RECORDED, ids=['one-rank', 'rank1-of-3', 'no-shuffle'])
def test_sampler_yields_the_recorded_order(kwargs, expected):
    sampler = misc.InfiniteSampler(list(range(11)), **kwargs)
    assert [int(i) for i in itertools.islice(iter(sampler), len(expected))] == expected


def test_sampler_ranks_split_one_walk():
    walk = list(itertools.islice(iter(misc.InfiniteSampler(list(range(13)), seed=3)), 60))
    ranks = [list(itertools.islice(iter(misc.InfiniteSampler(list(range(13)), rank=r, num_replicas=3, seed=3)), 20))
             for r in range(3)]
    assert [int(walk[i]) for i in range(60)] == [int(ranks[i % 3][i // 3]) for i in range(60)]


def test_sampler_restarts_identically_and_rejects_bad_arguments():
    first = list(itertools.islice(iter(misc.InfiniteSampler(list(range(7)), seed=1)), 30))
    again = list(itertools.islice(iter(misc.InfiniteSampler(list(range(7)), seed=1)), 30))
    assert first == again
    for kwargs in (dict(rank=2, num_replicas=2), dict(window_size=1.5), dict(num_replicas=0)):
        with pytest.raises(ValueError):
            misc.InfiniteSampler(list(range(7)), **kwargs)
    with pytest.raises(ValueError):
        misc.InfiniteSampler([])


def test_constant_is_cached_and_broadcast():
    a = misc.constant([1, 2, 3], shape=[2, 3])
    assert a is misc.constant(np.array([1, 2, 3]), shape=(2, 3))
    assert torch.equal(a, torch.tensor([[1., 2., 3.], [1., 2., 3.]])) and a.is_contiguous()
    assert misc.constant([1, 2, 3], dtype=torch.float64).dtype == torch.float64
