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
from benchmarks.original_path import OriginalIteration, OriginalLoss
from training import loss as loss_lib, training_loop

OPT_KWARGS, G_REG_INTERVAL, D_REG_INTERVAL = dict(lr=0.0025, betas=[0, 0.99], eps=1e-8), 4, 16


class Iteration:
    """One training iteration through training/training_loop.py's own run_phases and update_ema, one phase per
    timed part (see OriginalIteration)."""

    def __init__(self, G, D, G_ema, loss, G_opt, D_opt, real_uint8, ema_beta):
        self.G, self.G_ema, self.loss, self.ema_beta = G, G_ema, loss, ema_beta
        self.device = next(G.parameters()).device
        self.real_uint8 = real_uint8
        self.phases = {phase.name: phase for phase in [training_loop.Phase('Gmain', [G], G_opt),
                                                       training_loop.Phase('Dmain', [D], D_opt),
                                                       training_loop.Phase('Dreg', [D], D_opt, D_REG_INTERVAL)]}
        self.parts = [('fetch', 1)] + [(name, phase.interval) for name, phase in self.phases.items()] + [('ema', 1)]
        self.progress = training_loop.Progress()  # batch_idx 0: every phase is due.
        self.real = None

    def run(self, name):
        if name == 'fetch':  # As BatchFeeder hands a batch over.
            self.real = self.real_uint8.to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1
        elif name == 'ema':
            training_loop.update_ema(self.G_ema, self.G, self.ema_beta)
        else:
            training_loop.run_phases([self.phases[name]], self.loss, [self.real], self.progress, self.G, self.device)


def _optimisers(G, D, impl):
    """Both loops' Adam with the lazy-regularisation rescaling; the original's runs its default per-parameter
    implementation with the same hyperparameters."""
    opts = [training_loop.lazy_reg_adam(module.parameters(), OPT_KWARGS, interval)
            for module, interval in ((G, G_REG_INTERVAL), (D, D_REG_INTERVAL))]
    if impl == 'original':
        opts = [torch.optim.Adam(opt.param_groups[0]['params'], **{k: opt.defaults[k] for k in ('lr', 'betas', 'eps')})
                for opt in opts]
    return opts


def build_iteration(args, device, impl):
    G, D = side_by_side.build_networks(args, device, impl)
    G, D = G.train().requires_grad_(False), D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    G_opt, D_opt = _optimisers(G, D, impl)
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
