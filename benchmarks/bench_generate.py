"""Time generation with the layered generator in inference mode (what sample generation and FID/KID do): the five
layers of a batch, psi 1, const noise. Prints one line per case: ms/batch and img/s.

    python -m benchmarks.bench_generate --res 32 --channel-base 4096 --channel-max 128 --batch 64 --impl both
    python -m benchmarks.bench_generate --preset ILS_predL --res 64 --batch 64 --device cuda

--impl both times the original's formulation of the ops (benchmarks/original_path.py) and ours on the same weights,
interleaved batch by batch. --compile compiles ours' G.
"""
import torch

from benchmarks import side_by_side


class Generate:
    parts = [('generate', 1)]

    def __init__(self, G, z):
        self.G, self.z = G, z

    @torch.no_grad()
    def run(self, name):
        self.G(self.z, None, return_layers=True, noise_mode='const')


def main():
    args = side_by_side.parser(__doc__, batch=64, iters=5, warmup=1).parse_args()
    device = side_by_side.setup(args)
    z = torch.randn([args.batch, 512], device=device)
    runners = {}
    for impl in side_by_side.impls(args):
        G = side_by_side.build_networks(args, device, impl, with_D=False)[0].eval()
        runners[impl] = Generate(torch.compile(G) if args.compile and impl == 'ours' else G, z)
    medians, peak = side_by_side.time_interleaved(args, device, runners)
    side_by_side.report('generate', args, device, runners, medians, peak, 'batch')


if __name__ == '__main__':
    main()
