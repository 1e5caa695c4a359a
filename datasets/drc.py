"""CUB (birds), Stanford Dogs and Stanford Cars as Deep-Region-Competition (DRC) prepares them.

Files are selected exactly as ILSGAN did (training/dataset.py:DRCDataset and the evaluation test sets), but every
image is read as RGB: the original read Dogs/Cars with cv2, i.e. BGR.
"""
import os

import numpy as np
import PIL.Image

from dnnlib.util import UserError

from .imaging import check_same_size, crop_resize, open_image, read_rgb, soft_mask_threshold, to_chw
from .sources import FileSource

FOLDERS = {'cub': 'birds', 'dog': 'dogs', 'car': 'cars'}
CUB_TABLES = ('images.txt', 'bounding_boxes.txt', 'train_val_test_split.txt')
CUB_SPLITS = {'train': 0, 'val': 1, 'test': 2}
TOKEN_FILES = {  # (train, test) token lists
    'dog': ('data_tr_sel.npy', 'data_te_sel.npy'),
    'car': ('data_mrcnn_train_select.npy', 'data_mrcnn_test_select.npy'),
}
TRAIN_IMAGE = {'dog': 'train_orig/orig/{}_orig.png', 'car': 'data_mrcnn/train/orig/{}_orig.png'}
TEST_IMAGE = 'data_mrcnn/test/resized/{}_resized.png'
TEST_MASK = 'data_mrcnn/test/resized/{}_maskresized.png'


def dataset_dir(data, data_root):
    path = os.path.join(os.path.abspath(data_root), FOLDERS[data])
    if not os.path.isdir(path):
        raise UserError(f'{path}: DRC {data} folder not found; get it as datasets/README.md says, or point '
                        f'--data-root / ILSGAN_DATA_ROOT at the folder holding birds/ dogs/ cars/')
    return path


# ------------------------------------------------------------------------------------------------------------------
# File lists.

def _read_table(path, columns):
    """Whitespace-separated rows of exactly `columns` fields (what pandas read_csv(delim_whitespace) accepted)."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError(f'{path}: missing; the DRC birds folder needs {", ".join(CUB_TABLES)}') from None
    rows = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if fields and len(fields) != columns:
            raise UserError(f'{path}:{lineno}: expected {columns} fields, got {len(fields)}; re-download the file')
        if fields:
            rows.append(fields)
    return rows


def read_cub(root):
    """[(key, split, (x, y, w, h))] in images.txt order. The three tables are paired row by row, as the
    original did; their ids must agree."""
    images, boxes, splits = (_read_table(os.path.join(root, name), n) for name, n in zip(CUB_TABLES, (2, 5, 2)))
    for name, table in (('bounding_boxes.txt', boxes), ('train_val_test_split.txt', splits)):
        if len(table) != len(images) or any(a[0] != b[0] for a, b in zip(images, table)):
            raise UserError(f'{os.path.join(root, name)}: its rows do not match images.txt id for id; '
                            f're-download the DRC birds tables together')
    try:
        # key = path without '.jpg' (the original's fname[:-4]); boxes are cast to int like pandas astype(int).
        return [(os.path.splitext(rel)[0], int(split[1]), tuple(int(float(v)) for v in box[1:]))
                for (_, rel), box, split in zip(images, boxes, splits)]
    except ValueError as e:
        raise UserError(f'{root}: non-numeric value in bounding_boxes.txt or train_val_test_split.txt ({e})') from None


def read_tokens(path):
    """File-name tokens from a DRC selection .npy, formatted as the original's '{}'.format(token)."""
    try:
        tokens = np.load(path)
    except FileNotFoundError:
        raise UserError(f'{path}: missing; get the DRC token lists as datasets/README.md says') from None
    except (OSError, ValueError) as e:
        raise UserError(f'{path}: cannot read token list ({e}); re-download it') from None
    return ['{}'.format(t.decode() if isinstance(t, bytes) else t) for t in np.asarray(tokens).ravel()]


def _token_path(data, root, split):
    return os.path.join(root, TOKEN_FILES[data][split == 'test'])


def train_source(data, root):
    """The GAN training images (split 0): CUB images/<key>.jpg, Dog/Car <tok>_orig.png."""
    if data == 'cub':
        relpaths = [f'images/{key}.jpg' for key, split, _ in read_cub(root) if split == CUB_SPLITS['train']]
        listed_by, meta = os.path.join(root, 'train_val_test_split.txt'), list(CUB_TABLES)
    else:
        listed_by = _token_path(data, root, 'train')
        relpaths = [TRAIN_IMAGE[data].format(t) for t in read_tokens(listed_by)]
        meta = [os.path.basename(listed_by)]
    if not relpaths:
        raise UserError(f'{listed_by}: lists no training images; re-download it')
    return FileSource(root, relpaths, listed_by=listed_by, meta_files=meta)


def test_items(data, root):
    """[(image relpath, mask relpath, CUB bbox or None)] of the test split."""
    if data == 'cub':
        return [(f'images/{key}.jpg', f'segmentations/{key}.png', bbox)
                for key, split, bbox in read_cub(root) if split == CUB_SPLITS['test']]
    return [(TEST_IMAGE.format(t), TEST_MASK.format(t), None) for t in read_tokens(_token_path(data, root, 'test'))]


def split_files(data, root):
    """{split: (number of items, [every file it needs])}, for `python -m datasets check`."""
    if data == 'cub':
        meta = read_cub(root)
        files = {name: [f'images/{k}.jpg' for k, s, _ in meta if s == code] for name, code in CUB_SPLITS.items()}
        splits = {name: (len(paths), paths) for name, paths in files.items()}
    else:
        train = [TRAIN_IMAGE[data].format(t) for t in read_tokens(_token_path(data, root, 'train'))]
        splits = {'train': (len(train), train)}
    test = test_items(data, root)
    splits['test'] = (len(test), [path for image, mask, _ in test for path in (image, mask)])
    return splits


# ------------------------------------------------------------------------------------------------------------------
# Test items.

def cub_test_box(bbox, width, height):
    """DRC's CUB framing: a square of half-side 0.75 max(w, h) around the bbox centre, clipped to the image (so it
    may end up non-square; it is then stretched to S x S)."""
    x, y, w, h = bbox
    r = int(0.75 * max(w, h))
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return (max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r))


def read_test_item(data, root, item, image_size, mask_size):
    """One test pair: image uint8 [3, S, S] (RGB) and mask uint8 [M, M] in {0, 1}."""
    image_path, mask_path = os.path.join(root, item[0]), os.path.join(root, item[1])
    image, mask = read_rgb(image_path, image_path), open_image(mask_path, mask_path)
    check_same_size(image, mask, image_path, mask_path)
    if data == 'cub':
        box = cub_test_box(item[2], *image.size)
        if box[0] >= box[2] or box[1] >= box[3]:
            raise UserError(f'{os.path.join(root, "bounding_boxes.txt")}: the box of {item[0]} lies outside the image')
        # The soft annotation, opened as-is: bilinear resize, then ToTensor > 0.5.
        return (to_chw(crop_resize(image, box, image_size)),
                soft_mask_threshold(crop_resize(mask, box, mask_size), mask_path))
    # Dogs/Cars: convert('1') dithers any grey, and PIL resizes mode '1' with NEAREST.
    binary = mask.convert('1').resize((mask_size, mask_size), PIL.Image.NEAREST)
    return (to_chw(image.resize((image_size, image_size), PIL.Image.BILINEAR)),
            np.asarray(binary, dtype=np.uint8))
