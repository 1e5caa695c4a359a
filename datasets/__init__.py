"""Training and test data for ILSGAN: the DRC CUB/Dogs/Cars, image folders and zips, and a built-in synthetic set.

See datasets/README.md for where to put the DRC data and `python -m datasets --help` for the tools.
"""
from .dataset import (ImageArrayDataset, SegmentationTestSet, load_test_set, load_training_set,
                      resolve_data_root)
from .synthetic import make_synthetic

__all__ = ['ImageArrayDataset', 'SegmentationTestSet', 'load_test_set', 'load_training_set', 'make_synthetic',
           'resolve_data_root']
