"""Time one ILSGAN training step (Gmain + Dmain: G forward, D on the shifted fake, backward; then D on fake and
real) at a given resolution, width and batch. Prints one line per case: ms/step and img/s.

    python -m benchmarks.bench_train_step --res 32 --channel-base 4096 --channel-max 128 --batch 8 --impl both
    python -m benchmarks.bench_train_step --preset ILS_predL --res 64 --batch 32 --device cuda

--impl both times the original's formulation of the ops (benchmarks/original_path.py) and ours on the same
networks and inputs in one run, interleaved step by step, so the machine's noise hits both alike.
"""
import torch

from benchmarks import side_by_side
from training import loss as loss_lib


def step(G, D, loss, real, batch, device):
    for phase, module in [('Gmain', G), ('Dmain', D)]:
        module.requires_grad_(True)
        z = torch.randn([batch, 512], device=device)
        eps = torch.rand([batch, G.eps_dim], device=device) * 2 - 1
        loss.accumulate_gradients(phase, real, z, eps, gain=1, cur_kimg=0)
        module.requires_grad_(False)
        module.zero_grad(set_to_none=True)


def main():
    args = side_by_side.parser(__doc__, batch=8, iters=10, warmup=2).parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    nets = {}
    for impl in side_by_side.impls(args):
        G, D = side_by_side.build_networks(args, device, impl)
        nets[impl] = (G.train(), D.train(), loss_lib.ILSLoss(device, G, D, r1_gamma=loss_lib.r1_gamma_heuristic(args.res, args.batch)))
    real = torch.randn([args.batch, 3, args.res, args.res], device=device)
    medians = side_by_side.time_interleaved(args, device, lambda impl: step(*nets[impl], real, args.batch, device))
    mem = f' peak_mem {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB' if device.type == 'cuda' else ''
    side_by_side.report('train_step', args, device, medians, 'step', mem)


if __name__ == '__main__':
    main()
