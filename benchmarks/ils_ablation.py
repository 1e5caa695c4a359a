"""ILS against --no-ils: several seeds on the built-in data sets, every snapshot scored the same way.

    python -m benchmarks.ils_ablation --outdir runs/ils-ablation --data synthetic,collage --seeds 0,1,2 --kimg 30
    python -m benchmarks.ils_ablation --outdir runs/ils-ablation ... --shard 1/2   # half of the jobs, in parallel
    python -m benchmarks.ils_ablation --outdir runs/ils-ablation --report           # the table of what is done

One job = (data set, setting, seed): train the `tiny` preset for --kimg through the training CLI, then score its
last snapshot (never one chosen on the test images): --n samples (seed 0, polarity auto), a U-Net trained for
--seg-iters on them and tested once on the data set's held-out test split (true masks), MINE for --mine-iters, and
the mask checks of the samples against the true masks. The U-Net is narrower than the original's by default
(--unet-width), so that a study fits in a few CPU hours. Every stage resumes, so a killed study continues where it
stopped when started again with the same options. Results go to <outdir>/results.jsonl (one line per job); the
report is the mean, standard deviation and range per (data set, setting).
"""
import glob
import json
import os
import statistics
import subprocess
import sys

import click

from dnnlib.util import UserError, cli_errors
from metrics import mine, samples, seg_eval
from pipeline import auto_test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {'ils': [], 'noils': ['--no-ils']}
REPORTED = (('IoU', ('segmentation', 'IoU')), ('DRC_IoU', ('segmentation', 'DRC_IoU')),
            ('DICE', ('segmentation', 'DRC_DICE')), ('MI1 (fg*m, bg*m)', ('mi', 'separate', 'ave_MI_train1')),
            ('MI2 (bg*(1-m), fg*(1-m))', ('mi', 'separate', 'ave_MI_train2')),
            ('single MI', ('mi', 'single', 'ave_MI_train')), ('inverted', ('masks', 'inverted')),
            ('shape IoU', ('masks', 'shape_iou')), ('area SD', ('masks', 'area_sd')),
            ('flipped', ('flipped',)))


def jobs(data_sets, settings, seeds):
    return [(d, s, seed) for d in data_sets for s in settings for seed in seeds]


def train(job_dir, data, setting, seed, kimg, resolution):
    """The job's run directory after training it to `kimg` (resuming an interrupted run)."""
    runs = sorted(glob.glob(os.path.join(job_dir, '0*')))
    final = f'network-snapshot-{kimg:06d}.pt'
    if runs and os.path.isfile(os.path.join(runs[-1], final)):
        return runs[-1]
    if runs and os.path.isfile(os.path.join(runs[-1], 'training-state.pt')):
        args = [f'--resume={runs[-1]}', f'--kimg={kimg}']
    else:
        args = [f'--outdir={job_dir}', '--cfg=tiny', f'--data={data}', f'--resolution={resolution}', f'--kimg={kimg}',
                f'--snap={max(1, kimg // 3)}', '--metrics=none', '--no-auto-test', f'--seed={seed}', *SETTINGS[setting]]
    subprocess.run([sys.executable, os.path.join(ROOT, 'train_ILS_64.py'), *args], check=True, cwd=ROOT)
    runs = sorted(glob.glob(os.path.join(job_dir, '0*')))
    if not runs or not os.path.isfile(os.path.join(runs[-1], final)):
        raise UserError(f'{job_dir}: training ended without {final}')
    return runs[-1]


def score(run_dir, data, kimg, resolution, n, seg_iters, mine_iters, unet_width):
    """Samples -> U-Net on the test split -> MINE -> mask checks, each stage resumable."""
    snapshot = os.path.join(run_dir, f'network-snapshot-{kimg:06d}.pt')
    syn = os.path.join(run_dir, 'scores', samples.samples_dir_name(snapshot, kimg))
    samples.generate_samples(snapshot, syn, n, seed=0)
    seg = seg_eval.run_segmentation(syn, data, os.path.join(syn, f'unet{unet_width}-{seg_iters}'), input_size=resolution,
                                    score_size=resolution, iters=seg_iters, seed=0, workers=0, width=unet_width)
    mi_dir = os.path.join(syn, f'mine-{mine_iters}')
    mi = samples.read_json(os.path.join(mi_dir, mine.RESULTS_NAME)) or \
        mine.eval_mi(syn, outdir=mi_dir, iters=mine_iters, resolution=resolution, seed=0)
    masks = auto_test.mask_check(syn, data, None, resolution)
    return dict(segmentation=seg, mi=mi, masks=masks['samples'], generated=masks['generated'],
                true_masks=masks['true_masks'], flipped=masks['flipped'], warnings=masks['warnings'])


def lookup(record, path):
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return float(record) if isinstance(record, (int, float)) else None


def report(results_path):
    """Markdown table: mean ± std [min, max] of each figure per (data set, setting), over the seeds done."""
    with open(results_path, encoding='utf-8') as f:
        records = [json.loads(line) for line in f if line.strip()]
    groups = {}
    for r in records:
        groups.setdefault((r['data'], r['setting']), []).append(r)
    lines = ['| data | setting | seeds | ' + ' | '.join(name for name, _ in REPORTED) + ' |',
             '| --- | --- | --- | ' + ' | '.join('---' for _ in REPORTED) + ' |']
    for (data, setting), rs in sorted(groups.items()):
        cells = []
        for _, path in REPORTED:
            values = [v for v in (lookup(r, path) for r in rs) if v is not None]
            if not values:
                cells.append('-')
            elif len(values) == 1:
                cells.append(f'{values[0]:.3f}')
            else:
                cells.append(f'{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} '
                             f'[{min(values):.3f}, {max(values):.3f}]')
        lines.append(f'| {data} | {setting} | {",".join(str(r["seed"]) for r in rs)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


@click.command(help=__doc__)
@click.option('--outdir', required=True, metavar='DIR', help='Where the jobs and results.jsonl live')
@click.option('--data', default='synthetic,collage', show_default=True, help='Built-in data sets')
@click.option('--settings', default='ils,noils', show_default=True, help=f'Of {", ".join(SETTINGS)}')
@click.option('--seeds', default='0,1,2', show_default=True)
@click.option('--kimg', type=click.IntRange(min=1), default=30, show_default=True)
@click.option('--resolution', type=click.IntRange(min=8), default=32, show_default=True)
@click.option('--n', type=click.IntRange(min=10), default=2000, show_default=True, help='Samples per snapshot')
@click.option('--seg-iters', type=click.IntRange(min=1), default=1500, show_default=True, help='U-Net iterations')
@click.option('--unet-width', type=click.IntRange(min=4), default=16, show_default=True,
              help="U-Net width (the original's is 64; 16 trains about 10x faster on a CPU)")
@click.option('--mine-iters', type=click.IntRange(min=1), default=2000, show_default=True, help='MINE iterations')
@click.option('--shard', default='1/1', show_default=True, help='i/k: run every k-th job starting at the i-th')
@click.option('--report', 'report_only', is_flag=True, help='Only print the table of the finished jobs')
@cli_errors
def main(outdir, data, settings, seeds, kimg, resolution, n, seg_iters, unet_width, mine_iters, shard, report_only):
    results_path = os.path.join(outdir, 'results.jsonl')
    if report_only:
        if not os.path.isfile(results_path):
            raise UserError(f'{results_path} does not exist; run some jobs first')
        print(report(results_path))
        return
    unknown = set(settings.split(',')) - set(SETTINGS)
    if unknown:
        raise UserError(f'unknown setting(s) {", ".join(sorted(unknown))}; use {", ".join(SETTINGS)}')
    try:
        index, count = (int(x) for x in shard.split('/'))
        seed_list = [int(s) for s in seeds.split(',')]
    except ValueError:
        raise UserError('--shard must be i/k and --seeds a comma-separated list of integers') from None
    if not 1 <= index <= count:
        raise UserError(f'--shard {shard}: i must be between 1 and k')
    os.makedirs(outdir, exist_ok=True)
    todo = jobs(data.split(','), settings.split(','), seed_list)[index - 1::count]
    for d, setting, seed in todo:
        name = f'{d}-{setting}-s{seed}'
        done = [json.loads(line) for line in open(results_path, encoding='utf-8')] if os.path.isfile(results_path) else []
        if any(r['job'] == name and r['kimg'] == kimg for r in done):
            print(f'{name}: done')
            continue
        print(f'=== {name}', flush=True)
        run_dir = train(os.path.join(outdir, name), d, setting, seed, kimg, resolution)
        scores = score(run_dir, d, kimg, resolution, n, seg_iters, mine_iters, unet_width)
        record = dict(job=name, data=d, setting=setting, seed=seed, kimg=kimg, run_dir=run_dir, n=n,
                      seg_iters=seg_iters, unet_width=unet_width, mine_iters=mine_iters, **scores)
        with open(results_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')
        print(f'{name}: IoU {scores["segmentation"]["IoU"]:.3f}, shape IoU {scores["masks"]["shape_iou"]:.2f}',
              flush=True)
    print(report(results_path))


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
