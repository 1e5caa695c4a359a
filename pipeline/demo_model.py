"""The model `make demo` evaluates: a tiny-preset run on `synthetic`, trained on a CPU and shipped in the repo.

On a CPU the demo's few minutes of training cannot get as far as masks that follow the objects, so the demo
evaluates this shipped run instead (and says so). The shipped run is a run directory cut down to what the auto-test
and the report read: one snapshot holding only G_ema, stored in float16 (a quarter of the run's snapshot size), and
the run's options, stats, log and image grids up to that snapshot (the big fakes/masks/reals grids cut to their
first 8x8 samples).

    python -m pipeline.demo_model RUN_DIR --kimg N     # export snapshot N of a finished run to checkpoints/
    python -m pipeline.demo_model RUN_DIR --choose-on synthetic:val   # export the snapshot that segments best there

--choose-on scores every snapshot the same way (samples, a narrow U-Net trained on them, tested on DATA's true
masks) and writes the table to RUN_DIR/demo-choice.json. Choose on a validation split, never on the test images
that the demo then reports.
"""
import json
import os
import platform
import shutil
import time

import click
import PIL.Image
import torch

import datasets
import dnnlib
from dnnlib.util import UserError, cli_errors, read_json
from metrics import samples, seg_eval
from pipeline import auto_test
from training import checkpoint, training_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_DIR = os.path.join(ROOT, 'checkpoints', 'synthetic32-tiny')
RUN_FILES = ('training_options.json', 'log.txt')
GRID_PREFIXES = ('fakes', 'masks', 'layers', 'grads')
CROPPED_GRIDS = ('fakes', 'masks', 'reals')  # One tile per sample, up to 32x32 of them: MBs each.
CROP_TILES = 8
PROVENANCE = 'provenance.json'


def _copy_grid(src, dst, prefix, tile):
    """Copy a grid image, keeping only the top-left CROP_TILES x CROP_TILES samples of the one-tile-per-sample ones."""
    if prefix not in CROPPED_GRIDS:
        shutil.copy2(src, dst)
        return
    with PIL.Image.open(src) as im:
        side = CROP_TILES * tile
        im.crop((0, 0, min(side, im.width), min(side, im.height))).save(dst)


def export(run_dir, kimg, dest=SHIPPED_DIR):
    """Write snapshot `kimg` of `run_dir` (G_ema in float16) and the files its report needs into `dest`."""
    snapshots = samples.list_snapshots(run_dir) if os.path.isdir(run_dir) else {}
    if kimg not in snapshots:
        raise UserError(f'{run_dir} has no network-snapshot-{kimg:06d}; snapshots: {sorted(snapshots) or "none"}')
    G_ema = checkpoint.load_snapshot(snapshots[kimg])['G_ema']
    options = read_json(os.path.join(run_dir, 'training_options.json'))
    tmp = dest.rstrip(os.sep) + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    snapshot_name = os.path.basename(snapshots[kimg])
    checkpoint.save_snapshot(os.path.join(tmp, snapshot_name), {'G_ema': G_ema}, options['training_set_kwargs'],
                             extra={'kimg': kimg}, dtype=torch.float16)
    for f in RUN_FILES:
        if os.path.isfile(os.path.join(run_dir, f)):
            shutil.copy2(os.path.join(run_dir, f), tmp)
    tile = options['training_set_kwargs']['resolution']
    for prefix, grid_name in [(p, f'{p}{kimg:06d}.png') for p in GRID_PREFIXES] + [('reals', 'reals.png')]:
        if os.path.isfile(os.path.join(run_dir, grid_name)):
            _copy_grid(os.path.join(run_dir, grid_name), os.path.join(tmp, grid_name), prefix, tile)
    shutil.copy2(os.path.join(run_dir, 'stats.jsonl'), tmp)
    training_loop.drop_stats_after(os.path.join(tmp, 'stats.jsonl'), kimg * 1000)
    with open(os.path.join(tmp, PROVENANCE), 'w', encoding='utf-8') as f:
        json.dump(dict(source_run=os.path.basename(os.path.abspath(run_dir)), kimg=kimg, snapshot=snapshot_name,
                       resolution=options['training_set_kwargs']['resolution'],
                       exported=time.strftime('%Y-%m-%d'), torch=torch.__version__, python=platform.python_version(),
                       machine=platform.processor() or platform.machine()), f, indent=2)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def score_snapshots(run_dir, data, min_kimg=1, n=1000, iters=300, width=16, seed=0):
    """{kimg: U-Net test scores on `data`} for every snapshot from min_kimg on, each stage resumable; also written
    to RUN_DIR/demo-choice.json. The U-Net trains as the demo's auto-test does (the preset's re-shaping and
    self-training, on the run's training images)."""
    snapshots = {k: p for k, p in samples.list_snapshots(run_dir).items() if k >= min_kimg}
    if not snapshots:
        raise UserError(f'{run_dir} has no network snapshots from {min_kimg} kimg on; train longer or lower --min-kimg')
    seg_eval.check_real_data(data)
    resolution = checkpoint.load_snapshot(next(iter(snapshots.values())))['training_set_kwargs']['resolution']
    reshape = auto_test.preset_reshape(run_dir)
    rounds = int(auto_test.preset_seg(run_dir, 'seg_self_train'))
    unlabelled = auto_test.training_data(run_dir) if rounds else None
    scores = {}
    for kimg, path in sorted(snapshots.items()):
        syn = os.path.join(run_dir, 'demo-choice', samples.samples_dir_name(path, kimg))
        samples.generate_samples(path, syn, n, seed=seed)
        desc = seg_eval.run_desc(data, "color", resolution, resolution, reshape, rounds)
        seg_dir = os.path.join(syn, f'{desc}-unet{width}-{iters}')
        scores[kimg] = seg_eval.run_segmentation(syn, data, seg_dir, input_size=resolution, score_size=resolution,
                                                 iters=iters, seed=seed, workers=0, width=width, reshape=reshape,
                                                 self_train_data=unlabelled, self_train_rounds=rounds)
        print(f'kimg {kimg}: IoU {scores[kimg]["IoU"]:.3f} on {data}', flush=True)
    seg_eval.write_json(os.path.join(run_dir, 'demo-choice.json'),
                        dict(data=data, n=n, iters=iters, unet_width=width, reshape=reshape, self_train_rounds=rounds,
                             seed=seed, scores=scores))
    return scores


def shipped_info(src=SHIPPED_DIR):
    """The provenance record of the shipped run (kimg, source run, versions)."""
    path = os.path.join(src, PROVENANCE)
    if not os.path.isfile(path):
        raise UserError(f'the shipped demo model is missing ({path}); restore it with `git checkout -- checkpoints`')
    return read_json(path)


def install(outdir, src=SHIPPED_DIR):
    """Copy the shipped run into a fresh run directory under `outdir`; returns its path."""
    info = shipped_info(src)
    run_dir = dnnlib.util.next_run_dir(outdir, f'{os.path.basename(src)}-shipped-{info["kimg"]:06d}kimg')
    shutil.copytree(src, run_dir)
    return run_dir


@click.command()
@click.argument('run_dir')
@click.option('--kimg', type=int, help='Which snapshot of the run to export')
@click.option('--choose-on', metavar='DATA', help='Export the snapshot whose samples segment DATA best (a val split)')
@click.option('--min-kimg', type=click.IntRange(min=0), default=1, show_default=True, help='With --choose-on: '
              'consider snapshots from this kimg on')
@click.option('--dest', default=SHIPPED_DIR, show_default=True, help='Where to write the shipped run')
@cli_errors
def main(run_dir, kimg, choose_on, min_kimg, dest):
    """Export snapshot KIMG (or the best on --choose-on) of the tiny run RUN_DIR as the demo's shipped model."""
    if (kimg is None) == (choose_on is None):
        raise UserError('pass exactly one of --kimg N and --choose-on DATA')
    if choose_on is not None:
        if (datasets.parse_builtin(choose_on) or (None, None))[1] == 'test':
            raise UserError(f'--choose-on {choose_on}: choose on a validation split (e.g. synthetic:val), not on '
                            f'the test images the demo reports')
        scores = score_snapshots(run_dir, choose_on, min_kimg)
        kimg = max(scores, key=lambda k: scores[k]['IoU'])
        print(f'Chosen on {choose_on}: kimg {kimg} (IoU {scores[kimg]["IoU"]:.3f})')
    path = export(run_dir, kimg, dest)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    print(f'Exported {run_dir} kimg {kimg} to {path} ({size / 1e6:.1f} MB)')


if __name__ == '__main__':
    main()
