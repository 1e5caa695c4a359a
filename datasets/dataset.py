"""Public entry points: the GAN training set (cached uint8 arrays) and the segmentation test sets (in memory)."""
import os

import numpy as np
import torch
from tqdm import tqdm

from dnnlib.util import UserError

from . import collage, drc, pairs, synthetic
from .cache import cached_array, digest
from .imaging import train_crop
from .parallel import ordered_map
from .sources import FileSource, ZipSource, image_folder

SYNTHETIC_SEED = 0  # the built-in sets are fixed; load_training_set's `seed` only picks max_size subsets

# The procedural data sets rendered on demand, with exact masks: name -> (module, its chunk generator).
BUILTIN = {'synthetic': (synthetic, synthetic.synthetic_chunks), 'collage': (collage, collage.collage_chunks)}


def parse_builtin(data):
    """(name, split) for a built-in set, written `collage` (its test split) or `collage:val`; else None."""
    name, _, split = data.partition(':')
    if name not in BUILTIN:
        return None
    if split and split not in synthetic.SPLITS:
        raise UserError(f'{data}: unknown split {split!r}; use {name}, {name}:val or {name}:test')
    return name, split or 'test'


def is_builtin(data):
    return parse_builtin(data) is not None


def make_builtin(data, n, resolution, split='train', seed=SYNTHETIC_SEED):
    """Images 0..n-1 of a built-in set's split ('train', 'val' or 'test'): uint8 [n, 3, R, R] (RGB) and their masks
    uint8 [n, R, R] in {0, 1} (1 = foreground)."""
    chunks = list(BUILTIN[data][1](n, resolution, seed, split))
    if not chunks:
        return np.zeros((0, 3, resolution, resolution), np.uint8), np.zeros((0, resolution, resolution), np.uint8)
    images, masks = zip(*chunks)
    return np.concatenate(images), np.concatenate(masks)


def resolve_data_root(data_root=None):
    """The folder holding birds/ dogs/ cars/: the argument, else $ILSGAN_DATA_ROOT, else ./datasets."""
    return os.path.abspath(data_root or os.environ.get('ILSGAN_DATA_ROOT') or 'datasets')


def _unknown(data, what):
    return UserError(f'{os.path.abspath(data)}: no such file or folder, and {data!r} is not a dataset name; '
                     f'use cub, dog, car, {", ".join(BUILTIN)} or {what}')


class ImageArrayDataset(torch.utils.data.Dataset):
    """uint8 RGB images [N, 3, R, R]; with mirror, items N..2N-1 are their x-flipped copies."""

    def __init__(self, name, images, mirror=False):
        self.name = name
        self.images = images
        self.resolution = images.shape[-1]
        self.mirror = mirror

    def __len__(self):
        return len(self.images) * (2 if self.mirror else 1)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f'index {i} out of range for {len(self)} images')
        n = len(self.images)
        image = self.images[i % n]
        return np.array(image[:, :, ::-1] if i >= n else image)  # a copy: the cache memmap is read-only


class SegmentationTestSet(torch.utils.data.Dataset):
    """Test pairs held in memory: images uint8 [N, 3, S, S] (RGB), masks uint8 [N, M, M] in {0, 1}."""

    def __init__(self, name, images, masks):
        self.name = name
        self.images = images
        self.masks = masks

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = torch.from_numpy(self.images[i]).float() / 127.5 - 1  # = ToTensor + Normalize(0.5, 0.5)
        return image, torch.from_numpy(self.masks[i]).long()


def _training_source(data, resolution, data_root):
    """(name, source, identity) of a file-backed training set."""
    if data in drc.FOLDERS:
        root = drc.dataset_dir(data, resolve_data_root(data_root))
        return f'DRC_{data}{resolution}split0', drc.train_source(data, root), [data, root]
    path = os.path.abspath(data)
    if os.path.isfile(path) and path.lower().endswith('.zip'):
        return f'{os.path.splitext(os.path.basename(path))[0]}{resolution}', ZipSource(path), ['zip', path]
    if os.path.isdir(path):
        return f'{os.path.basename(path)}{resolution}', image_folder(path), ['folder', path]
    raise _unknown(data, 'a folder of images or a .zip')


def load_training_set(data, resolution, data_root=None, cache_dir=None, max_size=None, mirror=False, seed=0,
                      n_synthetic=2000):
    """The GAN training set, decoded once into the cache and memory-mapped from there."""
    if data in BUILTIN:  # always the train split
        module, chunks = BUILTIN[data]
        name, count = f'{data}{resolution}', n_synthetic
        identity, content = [data, module.VERSION, n_synthetic, SYNTHETIC_SEED, resolution], []

        def batches():
            for images, _masks in chunks(n_synthetic, resolution, SYNTHETIC_SEED):
                yield images
    else:
        name, source, identity = _training_source(data, resolution, data_root)
        count, identity, content = len(source), identity + ['train', resolution], source.fingerprint()

        def batches():
            for image in ordered_map(lambda i: train_crop(source.read(i), resolution), len(source)):
                yield image[None]
    images = cached_array(cache_dir, name, identity, content, (count, 3, resolution, resolution), batches)
    if max_size is not None and max_size < len(images):
        # StyleGAN2-ADA's choice of subset: a seeded shuffle, kept in file order.
        images = images[np.sort(np.random.RandomState(seed).permutation(len(images))[:max_size])]
    return ImageArrayDataset(name, images, mirror)


def files_digest(root, relpaths):
    """A digest of the files' names, sizes and mtimes under `root`: it changes when any of them changes."""
    root = os.path.abspath(root)
    return digest([root, FileSource(root, relpaths, listed_by=root).fingerprint()])


def test_set_digest(data, data_root=None, n_synthetic=500):
    """A digest of what load_test_set reads for `data`: the recipe of a built-in set, else every file it opens (the
    CUB tables too: they hold the crops). Cheap: nothing is decoded."""
    if is_builtin(data):
        name, split = parse_builtin(data)
        return digest([name, BUILTIN[name][0].VERSION, n_synthetic, SYNTHETIC_SEED, split])
    if data in drc.FOLDERS:
        root = drc.dataset_dir(data, resolve_data_root(data_root))
        tables = list(drc.CUB_TABLES) if data == 'cub' else []
        return files_digest(root, tables + [path for item in drc.test_items(data, root) for path in item[:2]])
    if pairs.is_pairs_folder(data):
        root = os.path.abspath(data)
        return files_digest(root, [os.path.relpath(path, root) for pair in pairs.list_pairs(root) for path in pair])
    raise _unknown(data, 'a folder with images/ and masks/')


def _decode_pairs(read, n, name):
    images, masks = zip(*tqdm(ordered_map(read, n), total=n, desc=f'Loading {name}', unit='img', disable=None))
    return np.stack(images), np.stack(masks)


def load_test_set(data, image_size, mask_size=None, data_root=None, n_synthetic=500):
    """Real (or built-in) images with ground-truth masks, for the segmentation evaluation. A built-in set is tested
    on its test split; `collage:val` / `synthetic:val` give the validation split, for choices (snapshots, settings)
    that must not see the test images."""
    mask_size = mask_size or image_size
    if is_builtin(data):
        data, split = parse_builtin(data)
        # Geometry is resolution-independent, so masks rendered at another size outline the same objects.
        images, masks = make_builtin(data, n_synthetic, image_size, split)
        if mask_size != image_size:
            masks = make_builtin(data, n_synthetic, mask_size, split)[1]
        return SegmentationTestSet(f'{data}{image_size}{split}', images, masks)
    if data in drc.FOLDERS:
        root = drc.dataset_dir(data, resolve_data_root(data_root))
        items = drc.test_items(data, root)
        if not items:
            raise UserError(f'{root}: the DRC {data} test split is empty; check its split/token files')
        name = f'DRC_{data}{image_size}test'

        def read(i):
            return drc.read_test_item(data, root, items[i], image_size, mask_size)
    elif pairs.is_pairs_folder(data):
        items = pairs.list_pairs(os.path.abspath(data))
        name = f'{os.path.basename(os.path.abspath(data))}{image_size}'

        def read(i):
            return pairs.read_pair(items[i], image_size, mask_size, labelled=True)
    elif os.path.isdir(data):
        raise UserError(f'{os.path.abspath(data)}: a test folder needs images/<stem>.<ext> and masks/<stem>.png')
    else:
        raise _unknown(data, 'a folder with images/ and masks/')
    return SegmentationTestSet(name, *_decode_pairs(read, len(items), name))
