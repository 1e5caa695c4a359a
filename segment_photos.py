"""Segment your own photos with a trained segmenter: writes <stem>_mask.png and <stem>_cutout.png (RGBA) per photo.

\b
  python segment_photos.py --network=<seg run>/network-snapshot-005020.pth --input=photos/ --outdir=out/

The photo is resized to --size (the segmenter's training input size) and the logits are upsampled back to the
photo's own resolution, so masks and cut-outs keep the original size and aspect ratio.
"""
import json
import os

import click
import numpy as np
import torch
from PIL import Image, ImageOps

import dnnlib
from dnnlib.util import UserError
from metrics.seg_eval import load_segmenter, predict, progress

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')


def list_photos(path):
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(f'--input {path} does not exist; pass an image file or a folder of images')
    photos = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(EXTENSIONS))
    if not photos:
        raise UserError(f'{path} holds no images ({", ".join(EXTENSIONS)}); pass an image file or a folder of images')
    return photos


def run_input_size(network):
    """The input size the segmenter was trained at, from its run's training_options.json; 64 if unknown."""
    path = os.path.join(os.path.dirname(os.path.abspath(network)), 'training_options.json')
    if not os.path.isfile(path):
        return 64
    with open(path, encoding='utf-8') as f:
        return json.load(f)['input_size']


@torch.no_grad()
def segment(net, photo, size, device):
    """Foreground mask (bool [H, W]) of a PIL RGB photo at its own resolution."""
    x = np.asarray(photo.resize((size, size), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 127.5 - 1
    pred = predict(net, torch.from_numpy(x)[None].to(device), (photo.height, photo.width))
    return pred[0].cpu().numpy() == 1


@click.command(help=__doc__)
@click.option('--network', required=True, metavar='PTH', help='Segmenter checkpoint (network-snapshot-*.pth)')
@click.option('--input', 'input_path', required=True, metavar='PATH', help='An image, or a folder of images')
@click.option('--outdir', required=True, metavar='DIR', help='Where masks and cut-outs are written')
@click.option('--size', type=click.IntRange(min=8), help='Segmenter input size  [default: the run\'s, else 64]')
@click.option('--device', metavar='DEV', help='torch device  [default: cuda if available, else cpu]')
@dnnlib.util.cli_errors
def main(network, input_path, outdir, size, device):
    photos = list_photos(input_path)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    net = load_segmenter(network, device)
    size = size or run_input_size(network)
    os.makedirs(outdir, exist_ok=True)
    for path in progress(photos, desc='segment'):
        with Image.open(path) as photo:
            photo = ImageOps.exif_transpose(photo).convert('RGB')  # Upright, as photo viewers show it.
        mask = segment(net, photo, size, device)
        stem = os.path.join(outdir, os.path.splitext(os.path.basename(path))[0])
        alpha = Image.fromarray(mask.astype(np.uint8) * 255, 'L')
        alpha.save(f'{stem}_mask.png')
        cutout = photo.copy()
        cutout.putalpha(alpha)
        cutout.save(f'{stem}_cutout.png')
    print(f'Segmented {len(photos)} photo(s) into {outdir}')


if __name__ == '__main__':
    main()
