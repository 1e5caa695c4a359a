"""Dataset tools.

    python -m datasets check --data cub --data-root DIR      # counts per split and missing files
    python -m datasets check --data path/to/images.zip       # or a folder of images
    python -m datasets export-synthetic --outdir DIR --n 64 --resolution 64 --split train --seed 0
    python -m datasets export-synthetic --data collage --outdir DIR   # the photo collage set
"""
import os

import click
import numpy as np
import PIL.Image

from dnnlib.util import UserError, cli_errors

from . import drc
from .dataset import BUILTIN, make_builtin, resolve_data_root
from .pairs import is_pairs_folder, list_pairs
from .sources import ZipSource, image_folder
from .synthetic import SPLITS

MAX_LISTED_MISSING = 20
PREVIEW_COLUMNS = 8
PREVIEW_ROWS = 4  # image rows, each followed by its masks


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx):
    """Inspect datasets and export the built-in ones."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
@click.option('--data', required=True, help="cub, dog, car, a folder of images (or images/ + masks/), or a .zip")
@click.option('--data-root', default=None, help='Folder holding birds/ dogs/ cars/ [default: $ILSGAN_DATA_ROOT or ./datasets]')
def check(data, data_root):
    """Count the images of each split and list missing files."""
    if data not in drc.FOLDERS:
        _check_path(data)
        return
    root = drc.dataset_dir(data, resolve_data_root(data_root))
    print(f'{data}: {root}')
    total_missing = 0
    for split, (count, paths) in drc.split_files(data, root).items():
        missing = [p for p in paths if not os.path.isfile(os.path.join(root, p))]
        total_missing += len(missing)
        print(f'  {split:<5} {count:>6} images  {len(missing)} files missing')
        for path in missing[:MAX_LISTED_MISSING]:
            print(f'        missing: {path}')
        if len(missing) > MAX_LISTED_MISSING:
            print(f'        ... and {len(missing) - MAX_LISTED_MISSING} more')
    if total_missing:
        raise UserError(f'{root}: {total_missing} files missing (listed above); complete the download')


def _check_path(data):
    path = os.path.abspath(data)
    if os.path.isfile(path) and path.lower().endswith('.zip'):
        print(f'zip {path}: {len(ZipSource(path))} images')
    elif os.path.isdir(path) and is_pairs_folder(path):
        print(f'image+mask folder {path}: {len(list_pairs(path))} pairs')
    elif os.path.isdir(path):
        print(f'image folder {path}: {len(image_folder(path))} images')
    else:
        raise UserError(f'{path}: no such file or folder, and {data!r} is not cub, dog or car')


@cli.command('export-synthetic')
@click.option('--data', default='synthetic', show_default=True, type=click.Choice(list(BUILTIN)), help='Which built-in set')
@click.option('--outdir', required=True, type=click.Path(file_okay=False), help='Where to write images/ masks/ preview.png')
@click.option('--n', default=64, show_default=True, type=click.IntRange(min=1), help='Number of images')
@click.option('--resolution', default=64, show_default=True, type=click.IntRange(min=8), help='Side in pixels')
@click.option('--split', default='train', show_default=True, type=click.Choice(sorted(SPLITS)))
@click.option('--seed', default=0, show_default=True, type=click.IntRange(min=0))
def export_synthetic(data, outdir, n, resolution, split, seed):
    """Write a built-in set's images and masks as PNGs (readable back as an image+mask test folder), plus a preview."""
    images, masks = make_builtin(data, n, resolution, split, seed)
    for sub in ('images', 'masks'):
        os.makedirs(os.path.join(outdir, sub), exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        PIL.Image.fromarray(image.transpose(1, 2, 0)).save(os.path.join(outdir, 'images', f'{i:06d}.png'))
        PIL.Image.fromarray(mask * 255).save(os.path.join(outdir, 'masks', f'{i:06d}.png'))
    preview = os.path.join(outdir, 'preview.png')
    PIL.Image.fromarray(_preview_grid(images, masks)).save(preview)
    print(f'wrote {n} {data} images and masks ({resolution}x{resolution}, {split}, seed {seed}) to {outdir}; '
          f'preview {preview}')


def _preview_grid(images, masks):
    """Rows of up to PREVIEW_COLUMNS images, each row followed by their masks. uint8 [H, W, 3]."""
    count = min(len(images), PREVIEW_COLUMNS * PREVIEW_ROWS)
    columns, res = min(count, PREVIEW_COLUMNS), images.shape[-1]
    rows = -(-count // columns)
    grid = np.zeros((rows, 2, columns, res, res, 3), np.uint8)
    for i in range(count):
        grid[i // columns, 0, i % columns] = images[i].transpose(1, 2, 0)
        grid[i // columns, 1, i % columns] = masks[i][:, :, None] * 255
    return grid.transpose(0, 1, 3, 2, 4, 5).reshape(rows * 2 * res, columns * res, 3)


@cli_errors
def main(args=None):
    try:
        cli.main(args=args, prog_name='python -m datasets', standalone_mode=False)
    except click.ClickException as e:  # usage errors too: one line on stderr and exit code 2, like any bad input
        raise UserError(' '.join(e.format_message().split())) from None


if __name__ == '__main__':
    main()
