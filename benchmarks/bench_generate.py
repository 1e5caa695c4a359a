"""Time generation with the layered generator in inference mode (what sample generation and FID/KID do): the five
layers of a batch, psi 1, const noise. Prints one line per case: ms/batch and img/s.

    python -m benchmarks.bench_generate --res 32 --channel-base 4096 --channel-max 128 --batch 64 --impl both
    python -m benchmarks.bench_generate --preset ILS_predL --res 64 --batch 64 --device cuda

--impl both times the original's formulation of the ops (benchmarks/original_path.py) and ours on the same weights,
interleaved batch by batch.
"""
import torch

from benchmarks import side_by_side


def main():
    args = side_by_side.parser(__doc__, batch=64, iters=5, warmup=1).parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    nets = {impl: side_by_side.build_networks(args, device, impl, with_D=False)[0].eval()
            for impl in side_by_side.impls(args)}
    z = torch.randn([args.batch, 512], device=device)

    @torch.no_grad()
    def generate(impl):
        nets[impl](z, None, return_layers=True, noise_mode='const')
    side_by_side.report('generate', args, device, side_by_side.time_interleaved(args, device, generate), 'batch')


if __name__ == '__main__':
    main()
