"""`make demo`: the whole ILSGAN pipeline on the built-in synthetic dataset, sized for a laptop CPU.

1. Train the tiny preset for a few kimg with the real training CLI: this shows that training runs, and ends with
   that run's report.
2. Run the real automatic evaluation (samples, a U-Net trained on them and tested on held-out synthetic images with
   their true masks, a short MINE run) and its report. By default it evaluates the shipped model
   (pipeline/demo_model.py): the few kimg of step 1 already form masks, but they follow the objects only after tens
   of kimg. `--evaluate=trained` evaluates the model from step 1 instead.

Every stage runs at reduced length, and the U-Net is a quarter of the original's width (--unet-width); the
commands in README.md run the original's full protocol.
"""
import os

import click

from dnnlib.util import cli_errors, read_json
from pipeline import auto_test, demo_model, train_cli


def train(outdir, kimg, resolution, seed, auto_test):
    """Train the tiny preset on `synthetic` with the training CLI; returns the run directory."""
    command = train_cli.make_command(64, default_auto_test=True)
    return command.main([f'--outdir={outdir}', '--cfg=tiny', '--data=synthetic', f'--resolution={resolution}',
                         f'--kimg={kimg}', f'--snap={kimg}', '--metrics=none', f'--seed={seed}',
                         *auto_test], standalone_mode=False)


def summary_line(run_dir):
    """'report path | IoU, DICE on held-out images | MINE MI' of an evaluated run."""
    summary = read_json(os.path.join(run_dir, 'auto_test', 'summary.json'))
    seg = summary['segmentation']['results']
    mi = summary['mi']['results'].get('separate', {})
    return (f'Report: {os.path.join(run_dir, "report.html")} | held-out synthetic images: IoU {seg["IoU"]:.3f}, '
            f'DRC_IoU {seg["DRC_IoU"]:.3f}, DICE {seg["DRC_DICE"]:.3f} | MINE (separate) '
            f'MI1 {mi.get("ave_MI_train1", float("nan")):.3f}, MI2 {mi.get("ave_MI_train2", float("nan")):.3f} nats')


@click.command()
@click.option('--outdir', default='demo-runs', show_default=True, help='Parent of the run directories')
@click.option('--kimg', type=click.IntRange(min=1), default=4, show_default=True, help='Training length of step 1')
@click.option('--evaluate', type=click.Choice(['shipped', 'trained']), default='shipped', show_default=True,
              help='Evaluate the shipped model, or the one just trained')
@click.option('--samples', type=click.IntRange(min=10), default=1000, show_default=True, help='Synthetic pairs for the U-Net')
@click.option('--seg-iters', type=click.IntRange(min=1), default=300, show_default=True, help='U-Net iterations')
@click.option('--unet-width', type=click.IntRange(min=4), default=16, show_default=True,
              help="U-Net width (the original's is 64; 16 trains about 10x faster on a CPU)")
@click.option('--mine-iters', type=click.IntRange(min=1), default=200, show_default=True, help='MINE iterations')
@click.option('--resolution', type=int, default=32, show_default=True, help='Image size of step 1')
@click.option('--seed', type=int, default=0, show_default=True)
@cli_errors
def main(outdir, kimg, evaluate, samples, seg_iters, unet_width, mine_iters, resolution, seed):
    """Train on `synthetic`, evaluate against its true masks, write report.html."""
    lengths = [f'--auto-test-n={samples}', f'--auto-test-iters={seg_iters}', f'--auto-test-unet-width={unet_width}',
               f'--auto-test-mine-iters={mine_iters}']
    if evaluate == 'trained':
        run_dir = train(outdir, kimg, resolution, seed, ['--auto-test', *lengths])
        print(f'\nDemo done. Trained and evaluated {kimg} kimg from scratch. {summary_line(run_dir)}')
        return

    info = demo_model.shipped_info()  # Missing files fail now, not after training.
    trained_dir = train(outdir, kimg, resolution, seed, ['--no-auto-test'])
    print(f'\nStep 1 done: {kimg} kimg trained from scratch, report {os.path.join(trained_dir, "report.html")}.')
    print(f'Step 2: evaluating the shipped model ({info["kimg"]} kimg of the same preset, trained on a CPU; '
          f'see checkpoints/README.md), since masks follow the objects only after tens of kimg.')
    shipped_dir = demo_model.install(outdir)
    auto_test.run_auto_test(shipped_dir, 'synthetic', n=samples, seg_iters=seg_iters, mine_iters=mine_iters,
                           metric=None, scale=info['resolution'], seed=seed, unet_width=unet_width)
    print(f'\nDemo done. Trained {kimg} kimg in {trained_dir}; evaluated the shipped {info["kimg"]}-kimg model. '
          f'{summary_line(shipped_dir)}')


if __name__ == '__main__':
    main()
