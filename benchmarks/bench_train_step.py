"""Time one full ILSGAN training iteration: Gmain + Dmain every iteration and Dreg (R1) every 16th, each phase with
its optimiser step, plus the batch fetch and the G_ema update, at a given resolution, width and batch.

    python -m benchmarks.bench_train_step --res 32 --channel-base 4096 --channel-max 128 --batch 8 --impl both
    python -m benchmarks.bench_train_step --preset ILS_predL --res 64 --batch 32 --device cuda --impl both

--impl both sets up ours as training/training_loop.py does and the original's formulation as its training loop and
loss do (benchmarks/original_path.py), on the same weights, and times them part by part, interleaved. An
iteration's time is the sum of each part's median weighted by how often the part runs (Dreg: 1/16).
--compile compiles ours' two synthesis networks (D cannot be: R1 needs its double backward).
"""
import copy

import torch

from benchmarks import side_by_side
from benchmarks.original_path import OriginalIteration, OriginalLoss, update_ema
from torch_utils import misc
from training import loss as loss_lib

LR, BETAS, G_REG_INTERVAL, D_REG_INTERVAL = 0.0025, (0, 0.99), 4, 16


class Iteration:
    """One training iteration as training/training_loop.py runs it, in timed parts (see OriginalIteration)."""

    def __init__(self, G, D, G_ema, loss, G_opt, D_opt, real_uint8, ema_beta):
        self.G, self.D, self.G_ema, self.loss = G, D, G_ema, loss
        self.opts = {'G': G_opt, 'D': D_opt}
        self.device = next(G.parameters()).device
        self.real_uint8 = real_uint8
        self.ema_beta = ema_beta
        self.parts = [('fetch', 1), ('Gmain', 1), ('Dmain', 1), ('Dreg', D_REG_INTERVAL), ('ema', 1)]
        self.real = None

    def run(self, name):
        if name == 'fetch':
            self.real = self.real_uint8.to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1
        elif name == 'ema':
            update_ema(self.G_ema, self.G, self.ema_beta)
        else:
            self._phase(name, dict(self.parts)[name])

    def _phase(self, name, interval):
        module, opt = (self.G, self.opts['G']) if name.startswith('G') else (self.D, self.opts['D'])
        n = self.real.shape[0]
        module.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        z = torch.randn([n, self.G.z_dim], device=self.device)
        eps = torch.rand([n, self.G.eps_dim], device=self.device) * 2 - 1
        self.loss.accumulate_gradients(name, self.real, z, eps, gain=interval, cur_kimg=0)
        module.requires_grad_(False)
        misc.nan_to_num_([p.grad for p in module.parameters() if p.grad is not None])
        opt.step()


def _adam(params, reg_interval, fused):
    """Adam with StyleGAN2's lazy-regularisation rescaling of lr and betas (both loops); ours uses the fused one."""
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=LR * ratio, betas=[beta ** ratio for beta in BETAS], eps=1e-8, fused=fused)


def build_iteration(args, device, impl):
    G, D = side_by_side.build_networks(args, device, impl)
    G, D = G.train().requires_grad_(False), D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    fused = True if impl == 'ours' else None
    G_opt, D_opt = _adam(G.parameters(), G_REG_INTERVAL, fused), _adam(D.parameters(), D_REG_INTERVAL, fused)
    gamma = loss_lib.r1_gamma_heuristic(args.res, args.batch)
    real = torch.randint(0, 256, [args.batch, 3, args.res, args.res], dtype=torch.uint8)
    if device.type == 'cuda':
        real = real.pin_memory()
    beta = loss_lib.ema_beta(args.batch, cur_nimg=100_000, ema_kimg=args.batch * 10 / 32, ema_rampup=0.05)
    if impl == 'original':
        loss = OriginalLoss(G, D, r1_gamma=gamma)
        return OriginalIteration(G, D, G_ema, loss, G_opt, D_opt, real, beta, G_REG_INTERVAL, D_REG_INTERVAL)
    if args.compile:
        G.synthesis_bg, G.synthesis_fg = torch.compile(G.synthesis_bg), torch.compile(G.synthesis_fg)
    return Iteration(G, D, G_ema, loss_lib.ILSLoss(device, G, D, r1_gamma=gamma), G_opt, D_opt, real, beta)


def main():
    args = side_by_side.parser(__doc__, batch=8, iters=10, warmup=2).parse_args()
    device = side_by_side.setup(args)
    runners = {impl: build_iteration(args, device, impl) for impl in side_by_side.impls(args)}
    medians, peak = side_by_side.time_interleaved(args, device, runners)
    side_by_side.report('train_step', args, device, runners, medians, peak, 'iteration')


if __name__ == '__main__':
    main()
