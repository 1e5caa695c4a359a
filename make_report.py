"""Regenerate the offline HTML report of a training run: <run>/report.html, plots in <run>/report/.

\b
  python make_report.py --run=runs/00000-DRC_cub64split0-ILS_predL-1gpu-batch32
"""
import click

import dnnlib
from metrics.report import write_report


@click.command(help=__doc__)
@click.option('--run', 'run_dir', required=True, metavar='DIR', help='Training run directory')
@dnnlib.util.cli_errors
def main(run_dir):
    print(write_report(run_dir))


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
