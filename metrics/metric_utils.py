"""Inception features of a generator and of a dataset, with an on-disk cache of the real-image statistics.

`opts` is the EasyDict built by metric_main.calc_metric: G, dataset, device, extractor, batch_size, cache_dir,
progress, num_gpus, rank, seed.
"""
import copy
import hashlib
import os
import re

import numpy as np
import torch
from tqdm import tqdm

from dnnlib.util import EasyDict, atomic_write


def default_cache_dir():
    return os.environ.get('ILSGAN_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'ilsgan', 'gan-metrics')


def feature_stats(features):
    """features float32 [N, D] -> EasyDict(features, mu [D], sigma [D, D]); 1/N covariance, as StyleGAN2-ADA."""
    x = features.astype(np.float64)
    mu = x.mean(axis=0)
    x -= mu
    return EasyDict(features=features, mu=mu, sigma=x.T @ x / len(x))


def _gather(x, opts):
    """All ranks' feature batches, interleaved so that row i*num_gpus + r comes from rank r's i-th row."""
    if opts.num_gpus == 1:
        return x
    ys = [torch.empty_like(x) for _ in range(opts.num_gpus)]
    torch.distributed.all_gather(ys, x)
    return torch.stack(ys, dim=1).flatten(0, 1)


def _image(item):
    # Datasets may return the image alone or (image, label) as in StyleGAN2-ADA.
    return np.asarray(item[0] if isinstance(item, (tuple, list)) else item)


def _collate(items):
    return torch.from_numpy(np.stack([_image(item) for item in items]))


def _cache_path(opts):
    """Keyed on the images themselves (a digest of every one), not only on the name, count and resolution: a
    changed file, another subset of the same size or another version of the data never reuses stale statistics."""
    ds = opts.dataset
    digest = hashlib.sha256()
    for i in range(len(ds)):
        image = np.ascontiguousarray(_image(ds[i]))
        digest.update(image.tobytes())
    name = re.sub(r'[^A-Za-z0-9_.-]+', '_', str(ds.name))
    key = f'{name}-{len(ds)}img-{image.shape[-1]}px-{opts.extractor.name}-{digest.hexdigest()[:16]}'
    return os.path.join(opts.cache_dir, f'{key}.npz')


def _rank0_says(flag, opts):
    """Rank 0's answer on every rank, so that all ranks take the same branch."""
    if opts.num_gpus == 1:
        return flag
    t = torch.tensor(float(flag), device=opts.device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


def dataset_stats(opts):
    """Features, mu and sigma of every image of opts.dataset ("full"), read from / written to the cache."""
    path = _cache_path(opts)
    if _rank0_says(os.path.isfile(path), opts):
        with np.load(path, allow_pickle=False) as f:
            return EasyDict(features=f['features'], mu=f['mu'], sigma=f['sigma'])

    n = len(opts.dataset)
    per_rank = -(-n // opts.num_gpus)
    # Rank r takes items r, r + num_gpus, ...; the gather re-interleaves them into dataset order.
    subset = [(i * opts.num_gpus + opts.rank) % n for i in range(per_rank)]
    # On CPU, loader workers would only steal cores from Inception; on GPU they hide PNG decoding.
    workers = 3 if opts.device.type == 'cuda' else 0
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(opts.dataset, subset), batch_size=opts.batch_size,
                                         collate_fn=_collate, num_workers=workers)
    feats = []
    with tqdm(total=n, desc='real features', unit='img', disable=not opts.progress) as bar:
        for images in loader:
            feats.append(_gather(opts.extractor(images), opts).cpu())
            bar.update(min(len(feats[-1]), n - bar.n))
    stats = feature_stats(torch.cat(feats)[:n].numpy())

    if opts.rank == 0:
        os.makedirs(opts.cache_dir, exist_ok=True)
        with atomic_write(path) as f:
            np.savez(f, features=stats.features, mu=stats.mu, sigma=stats.sigma)
    return stats


@torch.no_grad()
def generator_stats(opts, num_gen):
    """Features, mu and sigma of `num_gen` composites G(z, c) (psi 1, random noise), split over the ranks."""
    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    # A private seeded RNG: every snapshot sees the same z (less noise between snapshots), and the training RNG
    # stream is not consumed by z.
    rng = torch.Generator(opts.device).manual_seed(opts.seed + opts.rank)
    per_rank = -(-num_gen // opts.num_gpus)
    feats = []
    with tqdm(total=num_gen, desc='fake features', unit='img', disable=not opts.progress) as bar:
        for start in range(0, per_rank, opts.batch_size):
            b = min(opts.batch_size, per_rank - start)
            z = torch.randn([b, G.z_dim], generator=rng, device=opts.device)
            c = torch.zeros([b, G.c_dim], device=opts.device)
            img = G(z, c, noise_mode='random', truncation_psi=1)
            img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
            feats.append(_gather(opts.extractor(img), opts).cpu())
            bar.update(min(len(feats[-1]), num_gen - bar.n))
    return feature_stats(torch.cat(feats)[:num_gen].numpy())
