"""Metric registry: compute a metric by name and append its result to `<run_dir>/metric-<name>.jsonl`.

Names are `fid<N>[k]_full` / `kid<N>[k]_full`: N (thousands with `k`) generated images against every real image of the
training set. ILSGAN trains with fid10k_full and kid10k_full; StyleGAN2-ADA's fid50k_full and kid50k_full also
parse, and small N (e.g. fid100_full) make quick tests. KID uses subsets of at most 1000 images: 20 of them below
50k generated images (ILSGAN's kid10k_full), 100 from 50k on (StyleGAN2-ADA's kid50k_full).
"""
import json
import os
import re
import time

import torch

from dnnlib.util import EasyDict, UserError, append_jsonl, format_time

from . import frechet_inception_distance, inception, kernel_inception_distance, metric_utils

_NAME = re.compile(r'(fid|kid)(\d+)(k?)_full')
_LISTED = ['fid10k_full', 'kid10k_full', 'fid50k_full', 'kid50k_full']


def _parse(metric):
    """'kid10k_full' -> ('kid', 10000), or None for an unknown name."""
    m = _NAME.fullmatch(metric)
    if m is None:
        return None
    num_gen = int(m.group(2)) * (1000 if m.group(3) else 1)
    return (m.group(1), num_gen) if num_gen >= 2 else None


def is_valid_metric(metric):
    return _parse(metric) is not None


def list_valid_metrics():
    return list(_LISTED)


def calc_metric(metric, G, dataset, device, batch_size=64, cache_dir=None, progress=True, num_gpus=1, rank=0,
                inception_spec=None, seed=0):
    """Compute `metric` for generator G against `dataset` (every rank calls it when num_gpus > 1).

    dataset: len(), .name, and [i] -> uint8 [3, R, R]. inception_spec: see inception.load_feature_extractor.
    Returns EasyDict(results={metric: value}, metric, total_time, total_time_str, num_gpus).
    """
    if not is_valid_metric(metric):
        raise UserError(f'unknown metric {metric!r}; use one of {",".join(_LISTED)} (or fid<N>[k]_full, kid<N>[k]_full)')
    kind, num_gen = _parse(metric)
    device = torch.device(device)
    start = time.time()
    opts = EasyDict(G=G, dataset=dataset, device=device, batch_size=batch_size, progress=progress and rank == 0,
                    cache_dir=cache_dir or metric_utils.default_cache_dir(), num_gpus=num_gpus, rank=rank, seed=seed,
                    extractor=inception.load_feature_extractor(inception_spec, device))
    if kind == 'fid':
        value = frechet_inception_distance.compute_fid(opts, num_gen)
    else:
        num_subsets = 100 if num_gen >= 50000 else 20
        value = kernel_inception_distance.compute_kid(opts, num_gen, num_subsets=num_subsets, max_subset_size=1000)
    if num_gpus > 1:  # Only rank 0 computed the value.
        t = torch.tensor(value, dtype=torch.float64, device=device)
        torch.distributed.broadcast(t, src=0)
        value = t.item()
    total_time = time.time() - start
    return EasyDict(results=EasyDict({metric: value}), metric=metric, total_time=total_time,
                    total_time_str=format_time(total_time), num_gpus=num_gpus)


def report_metric(result_dict, run_dir=None, snapshot_pkl=None, sigma=None):
    """Print the result as one JSON line and append it to `<run_dir>/metric-<metric>.jsonl`.

    snapshot_pkl is stored relative to run_dir (a bare file name is taken as already relative); sigma is the ILS loss
    weight at that snapshot (None when unknown), which snapshot selection can filter on.
    """
    if run_dir is not None and snapshot_pkl is not None and os.path.dirname(snapshot_pkl):
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    record = dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time(),
                  sigma=None if sigma is None else float(sigma))
    print(json.dumps(record))
    if run_dir is not None and os.path.isdir(run_dir):
        append_jsonl(os.path.join(run_dir, f'metric-{result_dict["metric"]}.jsonl'), [record])


def snapshot_evaluator(metrics, dataset, run_dir, device, num_gpus=1, rank=0, inception_spec=None):
    """The training loop's `snapshot_metrics`: each of `metrics` for a snapshot's G_ema, computed on every rank and
    appended by rank 0 to the run's metric-<name>.jsonl. None when there are no metrics."""
    if not metrics:
        return None

    def evaluate(G_ema, snapshot_pkl, sigma):
        for metric in metrics:
            result = calc_metric(metric, G=G_ema, dataset=dataset, device=device, num_gpus=num_gpus, rank=rank,
                                 inception_spec=inception_spec, progress=False)
            if rank == 0:
                report_metric(result, run_dir=run_dir, snapshot_pkl=snapshot_pkl, sigma=sigma)
    return evaluate
