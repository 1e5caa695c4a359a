"""Input-pipeline throughput: random batches from the decoded cache vs decoding raw JPEG/PNG files.

    python -m benchmarks.bench_data                 # 64 px, batches of 32
    python -m benchmarks.bench_data --res 128 --raw 400

Cache cases read random 32-image batches from the memory-mapped .npy as torch uint8 tensors: plain indexing,
and a DataLoader with 0 and 2 workers, each with and without pin_memory (pinning needs CUDA). Raw cases
decode + centre-crop + resize CUB-sized (500x375) files written to a temp dir, in one process and in a pool.
Prints one line per case, with the device and torch version.
"""
import argparse
import os
import platform
import tempfile
import time

import numpy as np
import PIL.Image
import torch

import datasets
from datasets.imaging import read_rgb, train_crop
from datasets.parallel import ordered_map

RAW_SIZE = (500, 375)  # a typical CUB photo


def device_desc():
    if torch.cuda.is_available():
        return f'{torch.cuda.get_device_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}'
    return f'CPU only ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs), torch {torch.__version__}'


def report(case, images, seconds, desc):
    print(f'{case:<44} {images / seconds:>10,.0f} img/s   [{desc}]', flush=True)


def timed(fn, min_seconds):
    """Call fn() (which returns the number of images it handled) until min_seconds have passed; (images, seconds)."""
    fn()  # warm-up: page cache, worker start-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        count += fn()
    return count, time.perf_counter() - start


def bench_cache(ds, batch, min_seconds, desc):
    rng = np.random.default_rng(0)
    pin_options = [False, True] if torch.cuda.is_available() else [False]

    for pin in pin_options:
        def index_batch():
            x = torch.from_numpy(ds.images[np.sort(rng.integers(len(ds.images), size=batch))])
            if pin:
                x = x.pin_memory()
            return len(x)
        report(f'cache  index      pin_memory={pin}', *timed(index_batch, min_seconds), desc)

    for workers in (0, 2):
        for pin in pin_options:
            loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                                 pin_memory=pin, persistent_workers=workers > 0, drop_last=True)
            it = iter(loader)

            def loader_batch():
                nonlocal it
                try:
                    x = next(it)
                except StopIteration:
                    it = iter(loader)
                    x = next(it)
                assert x.dtype == torch.uint8
                return len(x)
            report(f'cache  DataLoader workers={workers} pin_memory={pin}', *timed(loader_batch, min_seconds), desc)
    if not torch.cuda.is_available():
        print('(pin_memory=True cases skipped: pinning needs CUDA)')


def bench_raw(tmp, count, res, min_seconds, desc):
    images, _ = datasets.make_builtin('synthetic', count, 128, seed=1)
    for ext, options in (('jpg', dict(quality=90)), ('png', {})):
        paths = []
        for i, image in enumerate(images):
            path = os.path.join(tmp, f'{i:05d}.{ext}')
            PIL.Image.fromarray(image.transpose(1, 2, 0)).resize(RAW_SIZE, PIL.Image.BILINEAR).save(path, **options)
            paths.append(path)

        def decode(i):
            return train_crop(read_rgb(paths[i], paths[i]), res)
        for workers in (1, os.cpu_count() or 1):
            def run():
                return sum(1 for _ in ordered_map(decode, len(paths), workers=workers))
            report(f'raw    {ext.upper()} {RAW_SIZE[0]}x{RAW_SIZE[1]} -> {res}  workers={workers}',
                   *timed(run, min_seconds), desc)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--res', type=int, default=64)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--n', type=int, default=2000, help='images in the cached (synthetic) training set')
    parser.add_argument('--raw', type=int, default=200, help='raw files per format')
    parser.add_argument('--seconds', type=float, default=2.0, help='minimum timing per case')
    args = parser.parse_args()
    desc = device_desc()
    with tempfile.TemporaryDirectory() as tmp:
        ds = datasets.load_training_set('synthetic', args.res, cache_dir=os.path.join(tmp, 'cache'), n_synthetic=args.n)
        bench_cache(ds, args.batch, args.seconds, desc)
        os.makedirs(os.path.join(tmp, 'raw'))
        bench_raw(os.path.join(tmp, 'raw'), args.raw, args.res, args.seconds, desc)


if __name__ == '__main__':
    main()
