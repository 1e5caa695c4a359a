"""Time one ILSGAN training step (Gmain + Dmain: G forward, D on the shifted fake, backward; then D on fake and
real) at a given resolution, width and batch. Prints one line per case: ms/step and img/s.

    python -m benchmarks.bench_train_step --res 32 --channel-base 4096 --channel-max 128 --batch 8 --impl both
    python -m benchmarks.bench_train_step --preset ILS_predL --res 64 --batch 32 --device cuda

--impl both times the original's formulation of the ops (benchmarks/original_path.py) and ours on the same
networks and inputs in one run, interleaved step by step, so the machine's noise hits both alike.
"""
import argparse
import contextlib
import statistics
import time

import torch

from benchmarks.original_path import original_formulation
from training import loss as loss_lib
from training import networks, presets


def build(args, device, impl):
    """G, D and the loss, with the same weights for every impl (seeded); `original` keeps its NCHW weights."""
    torch.manual_seed(0)
    spec = presets.get_preset(args.preset)
    cbase = args.channel_base or spec.channel_base
    cmax = args.channel_max or spec.channel_max
    fp16 = spec.num_fp16_res if device.type == 'cuda' and not args.fp32 else 0
    common = dict(channel_base=cbase, channel_max=cmax, num_fp16_res=fp16, conv_clamp=256 if fp16 else None)
    G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=args.res, img_channels=3,
                                  mapping_kwargs=dict(num_layers=args.map or spec.map), synthesis_kwargs=common)
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=args.res, img_channels=3,
                                   epilogue_kwargs=dict(mbstd_group_size=4), **common)
    place = networks.to_device if impl == 'ours' else (lambda module, device: module.to(device))
    G, D = place(G, device), place(D, device)
    loss = loss_lib.ILSLoss(device, G, D, r1_gamma=0.0002 * args.res ** 2 / args.batch)
    return G.train(), D.train(), loss


def step(G, D, loss, real, batch, device):
    for phase, module in [('Gmain', G), ('Dmain', D)]:
        module.requires_grad_(True)
        z = torch.randn([batch, 512], device=device)
        eps = torch.rand([batch, G.eps_dim], device=device) * 2 - 1
        loss.accumulate_gradients(phase, real, z, eps, gain=1, cur_kimg=0)
        module.requires_grad_(False)
        module.zero_grad(set_to_none=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='ILS_predL', choices=sorted(presets.PRESETS))
    parser.add_argument('--res', type=int, default=32)
    parser.add_argument('--channel-base', type=int)
    parser.add_argument('--channel-max', type=int)
    parser.add_argument('--map', type=int)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--impl', default='ours', choices=['ours', 'original', 'both'])
    parser.add_argument('--fp32', action='store_true', help='no fp16 blocks on CUDA')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    impls = ['original', 'ours'] if args.impl == 'both' else [args.impl]
    nets = {impl: build(args, device, impl) for impl in impls}
    real = torch.randn([args.batch, 3, args.res, args.res], device=device)
    times = {impl: [] for impl in impls}
    for i in range(args.warmup + args.iters):
        for impl in impls:  # Interleaved: both see the same background load.
            with original_formulation() if impl == 'original' else contextlib.nullcontext():
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step(*nets[impl], real, args.batch, device)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[impl].append(time.perf_counter() - start)
    mem = f' peak_mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB' if device.type == 'cuda' else ''
    for impl in impls:
        ms = statistics.median(times[impl]) * 1000
        print(f'train_step device={device.type} torch={torch.__version__} threads={torch.get_num_threads()} '
              f'preset={args.preset} res={args.res} cbase={args.channel_base} cmax={args.channel_max} batch={args.batch} '
              f'ops={impl}: {ms:.1f} ms/step (median of {args.iters}), {args.batch / ms * 1000:.1f} img/s{mem}')
    if len(impls) == 2:
        print(f'speed-up ours vs original: {statistics.median(times["original"]) / statistics.median(times["ours"]):.2f}x')


if __name__ == '__main__':
    main()
