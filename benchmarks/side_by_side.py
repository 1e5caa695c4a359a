"""What bench_train_step and bench_generate share: options, seeded networks for each formulation, interleaved timing
of an iteration's parts and the report (one line per formulation, or one JSON object with --json)."""
import argparse
import contextlib
import json
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
    p.add_argument('--compile', action='store_true', help='torch.compile what the benchmark says it compiles (ours)')
    p.add_argument('--threads', type=int, help='torch threads [default: torch\'s]')
    p.add_argument('--clock', default='wall', choices=['wall', 'cpu'],
                   help='wall time, or this process\'s CPU time (steadier on a loaded host; use with --threads 1)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--json', action='store_true', help='print one JSON object instead of the text lines')
    return p


def setup(args):
    """The device, with the thread count and cuDNN autotuning set as the training loop sets them."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    return torch.device(args.device)


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
                                               epilogue_kwargs=dict(mbstd_group_size=spec.mbstd), **common))
    place = networks.to_device if impl == 'ours' else (lambda module, dev: module.to(dev))
    return [place(net, device) for net in nets]


def time_interleaved(args, device, runners):
    """Median seconds of every part of every impl: runners[impl] has `parts` [(name, interval)] and run(name).

    The impls alternate iteration by iteration and the parts run in their order, so the host's noise hits all
    alike. Also returns each impl's peak CUDA memory in GiB (None on the CPU)."""
    times = {impl: {name: [] for name, _ in r.parts} for impl, r in runners.items()}
    peak = {impl: None for impl in runners}
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    clock = time.process_time if args.clock == 'cpu' else time.perf_counter
    for i in range(args.warmup + args.iters):
        for impl, runner in runners.items():
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            with original_formulation() if impl == 'original' else contextlib.nullcontext():
                for name, _ in runner.parts:
                    sync()
                    start = clock()
                    runner.run(name)
                    sync()
                    if i >= args.warmup:
                        times[impl][name].append(clock() - start)
            if device.type == 'cuda':
                peak[impl] = max(peak[impl] or 0, torch.cuda.max_memory_allocated(device) / 2 ** 30)
    medians = {impl: {name: statistics.median(t) for name, t in parts.items()} for impl, parts in times.items()}
    return medians, peak


def per_iteration(runner, medians):
    """Seconds per iteration: each part's median weighted by how often it runs (Dreg every 16th, ...)."""
    return sum(medians[name] / interval for name, interval in runner.parts)


def report(kind, args, device, runners, medians, peak, unit):
    """One line per impl (and the speed-up), or with --json one object with every figure."""
    config = dict(device=device.type, gpu=torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
                  torch=torch.__version__, threads=torch.get_num_threads(), preset=args.preset, res=args.res,
                  channel_base=args.channel_base, channel_max=args.channel_max, batch=args.batch, iters=args.iters,
                  fp16=device.type == 'cuda' and not args.fp32, compile=args.compile, clock=args.clock)
    results = {}
    for impl, runner in runners.items():
        seconds = per_iteration(runner, medians[impl])
        results[impl] = dict(ms=seconds * 1000, img_s=args.batch / seconds, peak_mem_gib=peak[impl],
                             parts_ms={name: medians[impl][name] * 1000 for name, _ in runner.parts},
                             intervals=dict(runner.parts))
    speedup = results['original']['ms'] / results['ours']['ms'] if len(results) == 2 else None
    if args.json:
        print(json.dumps(dict(bench=kind, unit=unit, config=config, results=results, speedup=speedup)))
        return
    head = ' '.join(f'{k}={v}' for k, v in config.items() if k not in ('gpu', 'iters', 'compile') and v is not None)
    for impl, r in results.items():
        parts = ', '.join(f'{name} {ms:.1f}' + (f'/{r["intervals"][name]}' if r['intervals'][name] > 1 else '')
                          for name, ms in r['parts_ms'].items())
        mem = f', peak_mem {r["peak_mem_gib"]:.2f} GiB' if r['peak_mem_gib'] is not None else ''
        detail = f' ({parts})' if len(r['parts_ms']) > 1 else ''
        print(f'{kind} {head} ops={impl}: {r["ms"]:.1f} ms/{unit}{detail}, median of {args.iters}, '
              f'{r["img_s"]:.1f} img/s{mem}')
    if speedup is not None:
        print(f'speed-up ours vs original: {speedup:.2f}x')
