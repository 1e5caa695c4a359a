"""What bench_train_step and bench_generate share: options, seeded networks for each formulation, interleaved
timing and the one-line report."""
import argparse
import contextlib
import statistics
import time

import torch

from benchmarks.original_path import original_formulation
from training import networks, presets


def parser(doc, batch, iters, warmup):
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--preset', default='ILS_predL', choices=sorted(presets.PRESETS))
    p.add_argument('--res', type=int, default=32)
    p.add_argument('--channel-base', type=int)
    p.add_argument('--channel-max', type=int)
    p.add_argument('--map', type=int)
    p.add_argument('--batch', type=int, default=batch)
    p.add_argument('--iters', type=int, default=iters)
    p.add_argument('--warmup', type=int, default=warmup)
    p.add_argument('--impl', default='ours', choices=['ours', 'original', 'both'])
    p.add_argument('--fp32', action='store_true', help='no fp16 blocks on CUDA')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return p


def impls(args):
    return ['original', 'ours'] if args.impl == 'both' else [args.impl]


def build_networks(args, device, impl, with_D=True):
    """G (and D) with the same weights for every impl (seeded); `original` keeps the contiguous weights it had."""
    torch.manual_seed(0)
    spec = presets.get_preset(args.preset)
    fp16 = spec.num_fp16_res if device.type == 'cuda' and not args.fp32 else 0
    common = dict(channel_base=args.channel_base or spec.channel_base, channel_max=args.channel_max or spec.channel_max,
                  num_fp16_res=fp16, conv_clamp=256 if fp16 else None)
    nets = [networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=args.res, img_channels=3,
                                      mapping_kwargs=dict(num_layers=args.map or spec.map), synthesis_kwargs=common)]
    if with_D:
        nets.append(networks.DiscriminatorOpen(c_dim=0, img_resolution=args.res, img_channels=3,
                                               epilogue_kwargs=dict(mbstd_group_size=4), **common))
    place = networks.to_device if impl == 'ours' else (lambda module, dev: module.to(dev))
    return [place(net, device) for net in nets]


def time_interleaved(args, device, run):
    """Median seconds of run(impl) per impl; the impls alternate call by call, so the host's noise hits all alike."""
    times = {impl: [] for impl in impls(args)}
    for i in range(args.warmup + args.iters):
        for impl in times:
            with original_formulation() if impl == 'original' else contextlib.nullcontext():
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run(impl)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(t) for impl, t in times.items()}


def report(kind, args, device, medians, unit, extra=''):
    for impl, seconds in medians.items():
        ms = seconds * 1000
        print(f'{kind} device={device.type} torch={torch.__version__} threads={torch.get_num_threads()} '
              f'preset={args.preset} res={args.res} cbase={args.channel_base} cmax={args.channel_max} batch={args.batch} '
              f'ops={impl}: {ms:.1f} ms/{unit} (median of {args.iters}), {args.batch / seconds:.1f} img/s{extra}')
    if len(medians) == 2:
        print(f'speed-up ours vs original: {medians["original"] / medians["ours"]:.2f}x')
