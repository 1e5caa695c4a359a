"""Training throughput of the segmentation U-Net: full steps (colour augmentation, forward, CE, backward, Adam).

E64 at 64 px and E128 both train on 64 px inputs; 128 px is E64 at --scale=128.

  python -m benchmarks.bench_unet [--device cuda] [--sizes 64,128] [--iters 20] [--compile] [--json]

Prints one line per input size: device, torch version, iterations/s at batch 64 (with --json one JSON object per
size). --compile times the torch.compile'd U-Net (compilation happens during the warm-up steps).
"""
import json
import time

import click
import torch

from dnnlib.util import UserError, cli_errors
from metrics.seg_augment import PRESETS, AugmentPipe
from metrics.seg_eval import train_step
from metrics.unet import UNet


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'cpu ({torch.get_num_threads()} threads)'


@click.command(help=__doc__)
@click.option('--sizes', default='64,128', show_default=True, help='Comma-separated input sizes')
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True)
@click.option('--iters', type=click.IntRange(min=1), default=20, show_default=True, help='Timed steps per size')
@click.option('--warmup', type=click.IntRange(min=0), default=3, show_default=True)
@click.option('--aug', type=click.Choice(list(PRESETS)), default='color', show_default=True)
@click.option('--device', metavar='DEV', help='torch device  [default: cuda if available, else cpu]')
@click.option('--compile', 'compiled', is_flag=True, help='torch.compile the U-Net')
@click.option('--json', 'as_json', is_flag=True, help='One JSON object per size instead of the text line')
@cli_errors
def main(sizes, batch, iters, warmup, aug, device, compiled, as_json):
    if not all(t.strip().isdigit() for t in sizes.split(',')):
        raise UserError(f'--sizes {sizes!r} is not a comma-separated list of pixel sizes, e.g. 64,128')
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    for size in map(int, sizes.split(',')):
        torch.manual_seed(0)
        net = UNet().to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        if compiled:
            net = torch.compile(net)
        pipe = AugmentPipe(**PRESETS[aug])
        x = torch.rand(batch, 3, size, size, device=device) * 2 - 1
        y = torch.randint(0, 2, (batch, size, size), device=device)
        for i in range(warmup + iters):
            if i == warmup:
                sync()
                start = time.perf_counter()
            train_step(net, opt, pipe, x, y)
        sync()
        sec = (time.perf_counter() - start) / iters
        if as_json:
            print(json.dumps(dict(bench='unet', device=device_name(device), torch=torch.__version__, batch=batch,
                                  size=size, aug=aug, compile=compiled, it_s=1 / sec, ms=sec * 1000,
                                  img_s=batch / sec)))
            continue
        print(f'bench_unet: {device_name(device)}, torch {torch.__version__}, batch {batch}, input {size} px, '
              f'aug {aug}: {1 / sec:.2f} it/s ({sec * 1000:.0f} ms/it, {batch / sec:.0f} img/s)')


if __name__ == '__main__':
    main()
