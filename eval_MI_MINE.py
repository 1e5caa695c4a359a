"""MINE mutual information between the fg and bg layers of a synthetic sample folder.

    python eval_MI_MINE.py --path=<synthetic dir> [--iters=100000] [--mode=both]

Writes <path>/MI-estimation-MINE/<NNNNN>/{separate,single}/ (or --outdir) and MI_estimation_results.json.
"""
import click

import dnnlib
from metrics import mine


@click.command()
@click.option('--path', 'synthetic_path', help='Synthetic sample folder holding fg/ bg/ mask/ [required]',
              metavar='DIR')
@click.option('--iters', help='Training iterations per run; evaluated every min(400, iters/10)',
              type=click.IntRange(min=1), default=100000, show_default=True)
@click.option('--mode', help='Which estimators to train', type=click.Choice([*mine.MODES, 'both']), default='both',
              show_default=True)
@click.option('--bound', help='dv-naive: the original formula; dv: logsumexp form', type=click.Choice(mine.BOUNDS),
              default='dv-naive', show_default=True)
@click.option('--shuffle', help='Marginal sampling of y', type=click.Choice(mine.SHUFFLES), default='replacement',
              show_default=True)
@click.option('--resolution', help='Resize samples to this size', type=click.IntRange(min=1), default=64,
              show_default=True)
@click.option('--device', help='Torch device [default: cuda if available, else cpu]', metavar='DEV')
@click.option('--seed', help='Random seed of each run', type=int, default=0, show_default=True)
@click.option('--save-checkpoints', help='Save network + Adam state 3 times per run (~1.8 GB each at 64 px)',
              is_flag=True)
@click.option('--outdir', help='Explicit run dir; finished modes in it are reused [default: next id]', metavar='DIR')
@dnnlib.util.cli_errors
def main(synthetic_path, mode, **kwargs):
    """Estimate the MI between synthetic fg and bg layers with MINE."""
    if synthetic_path is None:
        raise dnnlib.util.UserError('missing --path; pass --path=<synthetic sample folder>')
    modes = mine.MODES if mode == 'both' else (mode,)
    mine.eval_mi(synthetic_path, modes=modes, **kwargs)


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
