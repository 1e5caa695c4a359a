import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
GOLDEN_DIR = os.path.join(ROOT, '..', 'shared', 'golden')


@pytest.fixture(scope='session')
def golden_dir():
    if not os.path.isfile(os.path.join(GOLDEN_DIR, 'ops.pt')):
        pytest.skip(f'golden fixtures not found at {GOLDEN_DIR} (they live in ../shared/golden beside the checkout)')
    return GOLDEN_DIR


@pytest.fixture(scope='session')
def repo_root():
    return ROOT


cuda = pytest.mark.skipif(not __import__('torch').cuda.is_available(), reason='needs a CUDA GPU')
