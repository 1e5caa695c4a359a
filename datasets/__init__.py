"""Training and test data for ILSGAN: the DRC CUB/Dogs/Cars, image folders and zips, and two built-in procedural sets
(`synthetic`, `collage`).

See datasets/README.md for where to put the DRC data and `python -m datasets --help` for the tools.
"""
from .dataset import (BUILTIN, ImageArrayDataset, SegmentationTestSet, files_digest, is_builtin, load_test_set,
                      load_training_set, make_builtin, parse_builtin, resolve_data_root, test_set_digest)

__all__ = ['BUILTIN', 'ImageArrayDataset', 'SegmentationTestSet', 'files_digest', 'is_builtin', 'load_test_set',
           'load_training_set', 'make_builtin', 'parse_builtin', 'resolve_data_root', 'test_set_digest']
