"""MINE training throughput at the evaluation's default config, on the available device.

  python -m benchmarks.bench_mine [--device cuda] [--mode separate] [--iters 10] [--compile] [--json]

Default: separate mode (two 24,576 -> 3000 -> 1 networks, one Adam), batch 64 at 64 px, naive DV bound.
Prints one line: device, torch version, iterations/s, and the implied time of one 100k-iteration run
(training steps only; the 251 full-set evaluations come on top); with --json one JSON object. --compile times
torch.compile'd statistics networks (compilation happens during the warm-up steps).
"""
import json
import time

import click
import torch

from dnnlib.util import cli_errors, format_time
from metrics import mine


@click.command()
@click.option('--device', default='cuda' if torch.cuda.is_available() else 'cpu', show_default=True)
@click.option('--mode', default='separate', show_default=True, type=click.Choice(mine.MODES))
@click.option('--batch', default=64, show_default=True, type=click.IntRange(min=1))
@click.option('--res', default=64, show_default=True, type=click.IntRange(min=1), help='Sample resolution')
@click.option('--hidden', default=3000, show_default=True, type=click.IntRange(min=1))
@click.option('--iters', default=10, show_default=True, type=click.IntRange(min=1), help='Timed iterations')
@click.option('--compile', 'compiled', is_flag=True, help='torch.compile the statistics networks')
@click.option('--json', 'as_json', is_flag=True, help='One JSON object instead of the text line')
@cli_errors
def main(device, mode, batch, res, hidden, iters, compiled, as_json):
    device = torch.device(device)
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(0)
    layers = {k: torch.randint(0, 256, (1024, c, res, res), dtype=torch.uint8, generator=g)
              for k, c in (('fg', 3), ('bg', 3), ('mask', 1))}
    source = mine.LayerPairs(layers, mode, device)
    nets, opt = mine.make_estimators(source.num_estimators, source.num_features, hidden=hidden, lr=2e-4, device=device)
    if compiled:
        nets = [torch.compile(net) for net in nets]
    batches = mine.infinite_batches(len(source), batch, g)

    def step():
        mine.train_step(nets, opt, source(next(batches)), 'dv-naive', 'replacement', g)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    for _ in range(2):  # allocator and Adam state warm-up
        step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    rate = iters / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu x{torch.get_num_threads()} threads'
    if as_json:
        print(json.dumps(dict(bench='mine', device=name, torch=torch.__version__, mode=mode, batch=batch, res=res,
                              hidden=hidden, compile=compiled, it_s=rate)))
        return
    print(f'bench_mine: {name}, torch {torch.__version__}, {mode} batch {batch} at {res}px hidden {hidden}: '
          f'{rate:.2f} it/s; 100k iterations {format_time(100000 / rate)}')


if __name__ == '__main__':
    main()
