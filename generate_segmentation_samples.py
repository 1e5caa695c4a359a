"""Layered samples (bg, fg, mask, fg*mask, img) of a snapshot, for the segmentation and MINE evaluations.

\b
  python generate_segmentation_samples.py --network=<run dir> --n=50000 --topk=8000   # best FID up to 8000 kimg
  python generate_segmentation_samples.py --network=<run>/network-snapshot-004200.pt --outdir=<dir>

Writes <dir of snapshot>/synthetic_data-<kimg6>/ unless --outdir is given; an unfinished folder is completed.
Before writing, the masks are checked: polarity (more mask in the centre than on the border?) and shape diversity,
with a warning for inverted, empty/full or collapsed masks. --polarity=auto (default) writes the flipped
decomposition (mask -> 1 - mask, fg <-> bg) when the masks are inverted; keep and flip force either.
"""
import os

import click

import dnnlib
from metrics import samples


@click.command(help=__doc__)
@click.option('--network', required=True, metavar='PATH', help='Training run dir (best snapshot) or a snapshot file')
@click.option('--metric', default='fid10k_full', show_default=True, help='Metric that ranks a run\'s snapshots')
@click.option('--pkl_idx', type=click.IntRange(min=0), metavar='KIMG', help='Use the snapshot of exactly this kimg')
@click.option('--topk', type=click.IntRange(min=0), metavar='KIMG', help='Only consider snapshots up to this kimg')
@click.option('--sigma', type=float, help='Only consider snapshots scored at this ILS loss weight')
@click.option('--n', type=click.IntRange(min=1), default=10000, show_default=True, help='Number of samples')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the latent codes')
@click.option('--trunc', 'truncation_psi', type=float, default=1, show_default=True, help='Truncation psi')
@click.option('--noise-mode', type=click.Choice(samples.NOISE_MODES), default='const', show_default=True,
              help='Synthesis noise')
@click.option('--outdir', metavar='DIR', help='Output folder  [default: <dir of snapshot>/synthetic_data-<kimg6>]')
@click.option('--polarity', type=click.Choice(samples.POLARITIES), default='auto', show_default=True,
              help='auto: flip inverted masks; keep: as generated; flip: always mask -> 1 - mask, fg <-> bg')
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True, help='Samples per forward pass')
@click.option('--device', metavar='DEV', help='torch device  [default: cuda if available, else cpu]')
@dnnlib.util.cli_errors
def main(network, metric, pkl_idx, topk, sigma, n, seed, truncation_psi, noise_mode, outdir, polarity, batch, device):
    snapshot, kimg = samples.find_snapshot(network, metric=metric, topk=topk, pkl_idx=pkl_idx, sigma=sigma)
    outdir = outdir or os.path.join(os.path.dirname(snapshot), samples.samples_dir_name(snapshot, kimg))
    print(f'Snapshot: {snapshot} (kimg {kimg})')
    samples.generate_samples(snapshot, outdir, n, seed=seed, truncation_psi=truncation_psi, noise_mode=noise_mode,
                             batch=batch, device=device, polarity=polarity)
    print(f'Samples: {outdir}')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
