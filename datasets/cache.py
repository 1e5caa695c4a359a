"""Decoded-image cache: uint8 [N, 3, R, R] .npy files that later runs open with np.load(mmap_mode='r').

A file is named <name>-<identity hash>-<content hash>.npy:
- identity: what the array is for (source path, split, resolution, FORMAT_VERSION);
- content: what it was built from (files with sizes and mtimes).
So files never change once written. A rebuild writes a new file and deletes the stale ones of the same identity.
"""
import contextlib
import glob
import hashlib
import json
import os

import numpy as np
from tqdm import tqdm

from dnnlib.util import atomic_write

FORMAT_VERSION = 1  # bump when the decoding/cropping changes, so old caches are not reused


def default_cache_dir():
    return os.environ.get('ILSGAN_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'ilsgan')


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cache_dir, name, identity, content):
    id_hash = digest({'version': FORMAT_VERSION, 'identity': identity})
    return os.path.join(cache_dir, f'{name}-{id_hash}-{digest(content)}.npy')


def _write_npy(path, shape, batches, desc):
    """Stream uint8 batches into `path` (atomically), so the whole array never has to fit in memory.
    The progress bar shows on a terminal only (disable=None), keeping logs and captured stderr clean."""
    header = {'descr': '|u1', 'fortran_order': False, 'shape': tuple(shape)}
    written = 0
    with atomic_write(path) as f, tqdm(total=shape[0], desc=desc, unit='img', disable=None) as bar:
        np.lib.format.write_array_header_2_0(f, header)
        for batch in batches:
            assert batch.dtype == np.uint8 and batch.shape[1:] == tuple(shape[1:])
            f.write(np.ascontiguousarray(batch).tobytes())
            written += len(batch)
            bar.update(len(batch))
        assert written == shape[0], f'expected {shape[0]} images, got {written}'


def cached_array(cache_dir, name, identity, content, shape, make_batches):
    """Open the cached array for (identity, content), building it from make_batches() on a miss."""
    cache_dir = cache_dir or default_cache_dir()
    path = cache_path(cache_dir, name, identity, content)
    if not os.path.isfile(path):
        os.makedirs(cache_dir, exist_ok=True)
        _write_npy(path, shape, make_batches(), desc=f'Caching {name}')
        prefix = path.rsplit('-', 1)[0]
        for stale in glob.glob(glob.escape(prefix) + '-*.npy'):
            if stale != path:
                with contextlib.suppress(FileNotFoundError):  # another process may have removed it first
                    os.remove(stale)  # readers holding a memmap of it keep working (POSIX)
    return np.load(path, mmap_mode='r')
