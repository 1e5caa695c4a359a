"""The segmentation scorer's ceiling: what its U-Net reaches when it learns from real images and their true masks.

    python -m benchmarks.seg_ceiling --outdir runs/ceiling --data synthetic,collage --n 1000 --seg-iters 400

The ILS study (benchmarks/ils_ablation.py) scores a generator by training a U-Net on its samples and testing it on
the held-out test split. Trained the same way (same size, iterations, width, seed, test split) on --n images of the
data set's own training split with their true masks, the U-Net gives the best score that scorer can give: a
generator's IoU is only meaningful next to it. The real pairs are written in the samples' layout (img/, mask/) and
scored by the same run_segmentation; every stage resumes.
"""
import json
import os

import click
import numpy as np

import datasets
from dnnlib.util import UserError, cli_errors, read_json, write_json
from metrics import samples, seg_eval


def write_real_pairs(data, n, resolution, outdir):
    """Training images 0..n-1 of a built-in set and their true masks as <outdir>/img|mask/NNNNNN.png; returns outdir.
    A marker written after the last PNG tells a complete folder from one a kill left half-written."""
    marker, made = os.path.join(outdir, 'real_pairs.json'), dict(data=data, n=n, resolution=resolution, split='train')
    if read_json(marker) == made:
        return outdir
    images, masks = datasets.make_builtin(data, n, resolution, 'train')
    for sub in ('img', 'mask'):
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
    for i in range(n):
        samples.save_png(np.ascontiguousarray(images[i].transpose(1, 2, 0)), samples.png_path(outdir, 'img', i))
        samples.save_png(np.repeat(masks[i][:, :, None] * 255, 3, axis=2).astype(np.uint8),
                         samples.png_path(outdir, 'mask', i))
    write_json(marker, made)
    return outdir


def ceiling(data, outdir, n, resolution, seg_iters, unet_width):
    pairs = write_real_pairs(data, n, resolution, os.path.join(outdir, f'{data}-real{n}'))
    run_dir = os.path.join(outdir, f'{data}-real{n}-unet{unet_width}-{seg_iters}')
    return seg_eval.run_segmentation(pairs, data, run_dir, input_size=resolution, score_size=resolution,
                                     iters=seg_iters, seed=0, workers=0, width=unet_width)


@click.command(help=__doc__)
@click.option('--outdir', required=True, metavar='DIR', help='Where the real pairs and the U-Net runs go')
@click.option('--data', default='synthetic,collage', show_default=True, help='Built-in data sets')
@click.option('--n', type=click.IntRange(min=10), default=1000, show_default=True, help='Real training pairs')
@click.option('--resolution', type=click.IntRange(min=8), default=32, show_default=True)
@click.option('--seg-iters', type=click.IntRange(min=1), default=400, show_default=True, help='U-Net iterations')
@click.option('--unet-width', type=click.IntRange(min=4), default=16, show_default=True, help='U-Net width')
@cli_errors
def main(outdir, data, n, resolution, seg_iters, unet_width):
    names = data.split(',')
    unknown = [d for d in names if d not in datasets.BUILTIN]
    if unknown:
        raise UserError(f'--data: {", ".join(unknown)} not built in; use {", ".join(datasets.BUILTIN)}')
    rows = ['| data | real pairs | U-Net width | iterations | IoU | DRC_IoU | DICE |',
            '| --- | --- | --- | --- | --- | --- | --- |']
    for d in names:
        r = ceiling(d, outdir, n, resolution, seg_iters, unet_width)
        rows.append(f'| {d} | {n} | {unet_width} | {seg_iters} | {r["IoU"]:.3f} | {r["DRC_IoU"]:.3f} | '
                    f'{r["DRC_DICE"]:.3f} |')
        print(json.dumps(dict(r, data=d, n=n, seg_iters=seg_iters)), flush=True)
    print('\n'.join(rows))


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
