"""A torchrun smoke run of the distributed training path: G's step and D wrapped in DistributedDataParallel as the
training loop wraps them, the three loss phases with their optimiser steps, the statistics all-reduce and the
replica consistency check, on one rank or more.

    torchrun --standalone --nproc_per_node=1 -m benchmarks.nccl_smoke --result out.json
    torchrun --standalone --nproc_per_node=1 -m benchmarks.nccl_smoke --backend gloo --device cpu --result out.json

Rank 0 writes a JSON summary (backend, world size, seconds, finite losses) to --result.
"""
import argparse
import json
import os
import time

import torch

from torch_utils import misc, training_stats
from training import loss as loss_lib, networks


def _networks(res, channel_max, device, fp16):
    common = dict(channel_base=channel_max * res, channel_max=channel_max, num_fp16_res=4 if fp16 else 0,
                  conv_clamp=256 if fp16 else None)
    G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=common)
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=res, img_channels=3, epilogue_kwargs=dict(mbstd_group_size=4),
                                   **common)
    return [networks.to_device(m, device).train().requires_grad_(False) for m in (G, D)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backend', default='nccl', choices=['nccl', 'gloo'])
    p.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    p.add_argument('--res', type=int, default=32)
    p.add_argument('--channel-max', type=int, default=128)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--result', required=True)
    args = p.parse_args()

    start = time.perf_counter()
    torch.distributed.init_process_group(backend=args.backend)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0))) if args.device == 'cuda' else torch.device('cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # Same weights on every rank; broadcast_from_rank0 below makes sure of it.
    G, D = _networks(args.res, args.channel_max, device, fp16=device.type == 'cuda')
    misc.broadcast_from_rank0([G, D])
    ddp = lambda m: torch.nn.parallel.DistributedDataParallel(  # noqa: E731
        m.requires_grad_(True), device_ids=[device] if device.type == 'cuda' else None, broadcast_buffers=False)
    G_step, D_run = ddp(loss_lib.LayerGeneratorStep(G)), ddp(D)
    G.requires_grad_(False)
    D.requires_grad_(False)
    loss = loss_lib.ILSLoss(device, G=G_step, D=D_run, r1_gamma=loss_lib.r1_gamma_heuristic(args.res, args.batch * world))
    opts = {'G': torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.99)),
            'D': torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.99))}
    collector = training_stats.Collector(device=device)
    real = torch.rand([args.batch, 3, args.res, args.res], device=device) * 2 - 1
    for _ in range(args.steps):
        for phase, gain in (('Gmain', 1), ('Dmain', 1), ('Dreg', 16)):
            module = G if phase.startswith('G') else D
            module.requires_grad_(True)
            opts[phase[0]].zero_grad(set_to_none=True)
            z = torch.randn([args.batch, G.z_dim], device=device)
            eps = torch.rand([args.batch, G.eps_dim], device=device) * 2 - 1
            loss.accumulate_gradients(phase, real, z, eps, gain=gain, cur_kimg=0)
            module.requires_grad_(False)
            opts[phase[0]].step()
    stats = collector.update()  # all_gather_object of the names, all_reduce of the moments
    misc.check_ddp_consistency(G, 'G')
    misc.check_ddp_consistency(D, 'D')
    ones = torch.ones([1], device=device)
    torch.distributed.all_reduce(ones)
    finite = all(torch.isfinite(torch.tensor(v['mean'])) for k, v in stats.items() if k.startswith('Loss/'))
    result = dict(backend=torch.distributed.get_backend(), world=world, all_reduce=float(ones.item()), steps=args.steps,
                  finite=bool(finite), G_loss=stats.get('Loss/G/loss', {}).get('mean'),
                  seconds=time.perf_counter() - start)
    torch.distributed.destroy_process_group()
    if rank == 0:
        with open(args.result, 'w', encoding='utf-8') as f:
            json.dump(result, f)
        print(json.dumps(result))


if __name__ == '__main__':
    main()
