"""`make demo`: the whole ILSGAN pipeline on the built-in synthetic dataset, sized for a laptop CPU.

It trains the tiny preset with the real training CLI, then runs the real automatic evaluation (samples from the
last snapshot, a U-Net trained on them and tested on held-out synthetic images with true masks, and a short MINE
run), and ends with one summary line. Every stage runs at reduced length; the commands in README.md run the
original's full protocol.
"""
import json
import os

import click

from dnnlib.util import cli_errors
from training import train_cli


@click.command()
@click.option('--outdir', default='demo-runs', show_default=True, help='Parent of the run directory')
@click.option('--kimg', type=click.IntRange(min=1), default=8, show_default=True, help='Training length')
@click.option('--samples', type=click.IntRange(min=10), default=1000, show_default=True, help='Synthetic pairs for the U-Net')
@click.option('--seg-iters', type=click.IntRange(min=1), default=150, show_default=True, help='U-Net iterations')
@click.option('--mine-iters', type=click.IntRange(min=1), default=200, show_default=True, help='MINE iterations')
@click.option('--resolution', type=int, default=32, show_default=True, help='Image size')
@click.option('--seed', type=int, default=0, show_default=True)
@cli_errors
def main(outdir, kimg, samples, seg_iters, mine_iters, resolution, seed):
    """Train on `synthetic`, evaluate against its true masks, write report.html."""
    train = train_cli.make_command(64, default_auto_test=True)
    run_dir = train.main([f'--outdir={outdir}', '--cfg=tiny', '--data=synthetic', f'--resolution={resolution}',
                          f'--kimg={kimg}', '--snap=4', '--metrics=none', f'--seed={seed}', '--auto-test',
                          f'--auto-test-n={samples}', f'--auto-test-iters={seg_iters}',
                          f'--auto-test-mine-iters={mine_iters}'], standalone_mode=False)
    with open(os.path.join(run_dir, 'auto_test', 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    seg = summary['segmentation']['results']
    mi = summary['mi']['results'].get('separate', {})
    print(f'\nDemo done. Report: {os.path.join(run_dir, "report.html")} | held-out synthetic images: '
          f'IoU {seg["IoU"]:.3f}, DRC_IoU {seg["DRC_IoU"]:.3f}, DICE {seg["DRC_DICE"]:.3f} | '
          f'MINE (separate) MI1 {mi.get("ave_MI_train1", float("nan")):.3f}, MI2 {mi.get("ave_MI_train2", float("nan")):.3f} nats')


if __name__ == '__main__':
    main()
