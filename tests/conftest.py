import functools
import os
import sys
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# Tensors computed by the original code (tests/fixtures/golden/README.md): a small set shipped with the tests, and
# the larger one that lives in ../shared/golden beside a checkout.
FIXTURES_DIR = os.path.join(ROOT, 'tests', 'fixtures', 'golden')
GOLDEN_DIR = os.path.join(ROOT, '..', 'shared', 'golden')


@dataclass(frozen=True)
class GoldenSet:
    """One fixture set: `ops.pt`, `networks_res{res}.pt` and `legacy_snapshot_res{res}.pkl` in `folder`."""
    name: str
    folder: str
    res: int

    def path(self, filename):
        return os.path.join(self.folder, filename)

    @property
    def pickle_path(self):
        return self.path(f'legacy_snapshot_res{self.res}.pkl')

    @functools.cached_property
    def ops(self):
        return _load(self.path('ops.pt'))

    @functools.cached_property
    def networks(self):
        return _load(self.path(f'networks_res{self.res}.pt'))


def _load(path):
    import torch
    return torch.load(path, weights_only=False)  # plain dicts of tensors, ints and strings


def golden_sets():
    """The shipped set always (a missing file fails the tests), plus ../shared/golden where it exists."""
    sets = [GoldenSet('shipped16', FIXTURES_DIR, 16)]
    if os.path.isfile(os.path.join(GOLDEN_DIR, 'networks_res32.pt')):
        sets.append(GoldenSet('shared32', GOLDEN_DIR, 32))
    return sets


@pytest.fixture(scope='module', params=golden_sets(), ids=lambda s: s.name)
def golden(request):
    return request.param


@pytest.fixture(scope='session')
def golden_dir():
    if not os.path.isfile(os.path.join(GOLDEN_DIR, 'ops.pt')):
        pytest.skip(f'golden fixtures not found at {GOLDEN_DIR} (they live in ../shared/golden beside the checkout)')
    return GOLDEN_DIR


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


cuda = pytest.mark.skipif(not __import__('torch').cuda.is_available(), reason='needs a CUDA GPU')
