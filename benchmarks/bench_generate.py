"""Time generation with the layered generator in inference mode (what sample generation and FID/KID do): the five
layers of a batch, psi 1, const noise. Prints one line per case: ms/batch and img/s.

    python -m benchmarks.bench_generate --res 32 --channel-base 4096 --channel-max 128 --batch 64 --impl both
    python -m benchmarks.bench_generate --preset ILS_predL --res 64 --batch 64 --device cuda

--impl both times the original's formulation of the ops (benchmarks/original_path.py) and ours on the same weights,
interleaved batch by batch.
"""
import argparse
import contextlib
import statistics
import time

import torch

from benchmarks.original_path import original_formulation
from training import networks, presets


def build(args, device, impl):
    torch.manual_seed(0)
    spec = presets.get_preset(args.preset)
    fp16 = spec.num_fp16_res if device.type == 'cuda' and not args.fp32 else 0
    common = dict(channel_base=args.channel_base or spec.channel_base, channel_max=args.channel_max or spec.channel_max,
                  num_fp16_res=fp16, conv_clamp=256 if fp16 else None)
    G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=args.res, img_channels=3,
                                  mapping_kwargs=dict(num_layers=args.map or spec.map), synthesis_kwargs=common).eval()
    return networks.to_device(G, device) if impl == 'ours' else G.to(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='ILS_predL', choices=sorted(presets.PRESETS))
    parser.add_argument('--res', type=int, default=32)
    parser.add_argument('--channel-base', type=int)
    parser.add_argument('--channel-max', type=int)
    parser.add_argument('--map', type=int)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--impl', default='ours', choices=['ours', 'original', 'both'])
    parser.add_argument('--fp32', action='store_true', help='no fp16 blocks on CUDA')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    impls = ['original', 'ours'] if args.impl == 'both' else [args.impl]
    nets = {impl: build(args, device, impl) for impl in impls}
    z = torch.randn([args.batch, 512], device=device)
    times = {impl: [] for impl in impls}
    for i in range(args.warmup + args.iters):
        for impl in impls:
            with original_formulation() if impl == 'original' else contextlib.nullcontext(), torch.no_grad():
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                start = time.perf_counter()
                nets[impl](z, None, return_layers=True, noise_mode='const')
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[impl].append(time.perf_counter() - start)
    for impl in impls:
        ms = statistics.median(times[impl]) * 1000
        print(f'generate device={device.type} torch={torch.__version__} threads={torch.get_num_threads()} '
              f'preset={args.preset} res={args.res} cbase={args.channel_base} cmax={args.channel_max} batch={args.batch} '
              f'ops={impl}: {ms:.1f} ms/batch (median of {args.iters}), {args.batch / ms * 1000:.1f} img/s')
    if len(impls) == 2:
        print(f'speed-up ours vs original: {statistics.median(times["original"]) / statistics.median(times["ours"]):.2f}x')


if __name__ == '__main__':
    main()
