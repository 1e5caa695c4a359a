"""A folder of one's own labelled photos: <dir>/images/<stem>.<ext> with <dir>/masks/<stem>.png (grey > 127 = fg).

Framed like the training set (largest centred square), which is what ILSGAN's unused RealSegTestSet did too
(Resize + CenterCrop). `python -m datasets export-synthetic` writes this layout.
"""
import os

import numpy as np

from dnnlib.util import UserError

from .imaging import center_square, check_same_size, crop_resize, open_image, read_rgb, to_chw
from .sources import is_image_name


def is_pairs_folder(path):
    return os.path.isdir(os.path.join(path, 'images')) and os.path.isdir(os.path.join(path, 'masks'))


def list_pairs(folder):
    """[(image path, mask path)] sorted by stem."""
    image_dir, mask_dir = os.path.join(folder, 'images'), os.path.join(folder, 'masks')
    names = sorted(n for n in os.listdir(image_dir) if is_image_name(n))
    if not names:
        raise UserError(f'{image_dir}: no images found; expected <stem>.png/.jpg files beside masks/<stem>.png')
    pairs, stems = [], set()
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in stems:
            raise UserError(f'{os.path.join(image_dir, name)}: another image has the same stem {stem!r}; '
                            f'masks are matched by stem, so rename one')
        stems.add(stem)
        mask = os.path.join(mask_dir, stem + '.png')
        if not os.path.isfile(mask):
            raise UserError(f'{mask}: missing mask for {os.path.join(image_dir, name)}')
        pairs.append((os.path.join(image_dir, name), mask))
    return pairs


def read_pair(pair, image_size, mask_size, labelled=False):
    """Image uint8 [3, S, S] and mask uint8 [M, M] in {0, 1}. `labelled`: a hand-made ground-truth mask, which must
    use 0/255 (a generator's soft mask may well stay below 128 everywhere)."""
    image_path, mask_path = pair
    image, mask = read_rgb(image_path, image_path), open_image(mask_path, mask_path).convert('L')
    check_same_size(image, mask, image_path, mask_path)
    brightest = mask.getextrema()[1]
    if labelled and 0 < brightest <= 127:  # A 0/1 (or 0..127) mask would silently read as all background.
        raise UserError(f'{mask_path}: no pixel is above 127 (the brightest is {brightest}), so it would read as all '
                        f'background; masks are grey 0/255 (> 127 = foreground): save a 0/1 mask as 0/255')
    box = center_square(*image.size)
    mask = np.asarray(crop_resize(mask, box, mask_size))
    return to_chw(crop_resize(image, box, image_size)), (mask > 127).astype(np.uint8)
