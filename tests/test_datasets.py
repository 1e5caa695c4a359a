"""datasets/: DRC readers on miniature trees, generic sources, the synthetic set, the cache, errors and the CLI."""
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets import cache, dataset, drc, parallel, synthetic
from dnnlib.util import UserError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path, image, fmt=None):
    """Save a PIL image or an HWC / HW uint8 array, creating folders. PIL sniffs the format from the bytes when
    reading, so PNG content under a DRC '.jpg' name keeps the pixel checks exact."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format=fmt or ('PNG' if path.endswith(('.png', '.jpg')) else None))
    return path


def banded(width, height, band, centre=RED, sides=GREEN):
    """Non-square image whose centred square is `centre` and whose outer `band` pixels on the long axis are `sides`."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:] = sides
    if width > height:
        a[:, band:width - band] = centre
    else:
        a[band:height - band] = centre
    return a


def solid(width, height, colour):
    return np.full((height, width, 3), colour, np.uint8)


# ------------------------------------------------------------------------------------------------------------------
# Miniature DRC trees.

@pytest.fixture
def drc_root(tmp_path):
    root = tmp_path / 'drc'
    birds, dogs, cars = root / 'birds', root / 'dogs', root / 'cars'

    # CUB: ids 1, 4, 5 train (split 0), 2 val, 3 and 6 test.
    cub = [  # (id, key, split, bbox)
        (1, '001.Albatross/a', 0, (0, 0, 60, 40)),
        (2, '001.Albatross/b', 1, (0, 0, 10, 10)),
        (3, '002.Auklet/c', 2, (30, 20, 20, 10)),
        (4, '002.Auklet/d', 0, (0, 0, 10, 10)),
        (5, '003.Blackbird/e', 0, (0, 0, 10, 10)),
        (6, '003.Blackbird/f', 2, (0, 0, 20, 10)),
    ]
    save(str(birds / 'images/001.Albatross/a.jpg'), banded(60, 40, 10))          # wide: centre square is red
    save(str(birds / 'images/001.Albatross/b.jpg'), solid(16, 16, BLUE))          # val: never read
    save(str(birds / 'images/002.Auklet/d.jpg'), Image.new('L', (20, 30), 90))    # grayscale, tall
    save(str(birds / 'images/003.Blackbird/e.jpg'), Image.new('RGBA', (12, 12), (0, 0, 255, 40)))
    # Test c (80x60, bbox 30,20,20,10): r = 15, centre (40, 25), box (25, 10, 55, 40). Red inside, blue outside.
    c = solid(80, 60, BLUE)
    c[10:40, 25:55] = RED
    save(str(birds / 'images/002.Auklet/c.jpg'), c)
    m = np.full((60, 80), 255, np.uint8)
    m[10:40, 25:40], m[10:40, 40:55] = 200, 100  # soft annotation: 200 -> fg, 100 -> bg (threshold 127.5)
    save(str(birds / 'segmentations/002.Auklet/c.png'), m)
    # Test f (bbox 0,0,20,10): r = 15, centre (10, 5): box clipped to (0, 0, 25, 20), non-square.
    f = solid(40, 30, BLUE)
    f[:20, :25] = RED
    save(str(birds / 'images/003.Blackbird/f.jpg'), f)
    save(str(birds / 'segmentations/003.Blackbird/f.png'), np.full((30, 40), 255, np.uint8))
    (birds / 'images.txt').write_text(''.join(f'{i} {k}.jpg\n' for i, k, _, _ in cub))
    (birds / 'bounding_boxes.txt').write_text(''.join(f'{i} {" ".join(f"{v:.1f}" for v in b)}\n' for i, k, _, b in cub))
    (birds / 'train_val_test_split.txt').write_text(''.join(f'{i} {s}\n' for i, _, s, _ in cub))

    # Dogs: string tokens; train from train_orig/orig (a decoy under data_mrcnn/train/resized must be ignored).
    tr, te = ['n02085620_10074', 'n02085620_1'], ['n02085620_7']
    os.makedirs(dogs)
    np.save(dogs / 'data_tr_sel.npy', np.array(tr))
    np.save(dogs / 'data_te_sel.npy', np.array(te))
    save(str(dogs / f'train_orig/orig/{tr[0]}_orig.png'), banded(30, 50, 10))    # tall: centre square is red
    save(str(dogs / f'train_orig/orig/{tr[1]}_orig.png'), solid(20, 20, RED))
    save(str(dogs / f'data_mrcnn/train/resized/{tr[0]}_resized.png'), solid(20, 20, BLUE))
    save(str(dogs / f'data_mrcnn/test/resized/{te[0]}_resized.png'), solid(32, 32, RED))
    dm = np.zeros((32, 32), np.uint8)
    dm[:, :16] = 255
    save(str(dogs / f'data_mrcnn/test/resized/{te[0]}_maskresized.png'), dm)

    # Cars: integer tokens, train from data_mrcnn/train/orig.
    os.makedirs(cars)
    np.save(cars / 'data_mrcnn_train_select.npy', np.array([5, 17]))
    np.save(cars / 'data_mrcnn_test_select.npy', np.array([3]))
    save(str(cars / 'data_mrcnn/train/orig/5_orig.png'), solid(24, 16, RED))
    save(str(cars / 'data_mrcnn/train/orig/17_orig.png'), Image.new('P', (16, 16), 0))  # palette image
    save(str(cars / 'data_mrcnn/train/resized/5_resized.png'), solid(16, 16, BLUE))
    save(str(cars / 'data_mrcnn/test/resized/3_resized.png'), solid(16, 16, RED))
    save(str(cars / 'data_mrcnn/test/resized/3_maskresized.png'), np.full((16, 16), 128, np.uint8))  # grey
    return root


def assert_colour(chw, colour, tol=0):
    assert np.abs(chw.astype(int) - np.array(colour)[:, None, None]).max() <= tol


def assert_red(image):
    """A [-1, 1] float image that is pure red."""
    np.testing.assert_allclose(image.numpy(), np.broadcast_to(np.float32([1, -1, -1])[:, None, None], image.shape))


def test_cub_training_split_files_crop_and_channels(drc_root, tmp_path):
    ds = datasets.load_training_set('cub', 8, data_root=drc_root, cache_dir=tmp_path / 'cache')
    assert ds.name == 'DRC_cub8split0' and ds.resolution == 8 and len(ds) == 3
    assert ds.images.shape == (3, 3, 8, 8) and ds.images.dtype == np.uint8
    assert_colour(ds[0], RED)                 # the centred square of the banded image: no green bands
    assert_colour(ds[1], (90, 90, 90))        # grayscale -> 3 equal channels
    assert_colour(ds[2], BLUE)                # RGBA -> RGB (alpha dropped, not composited)


def test_dog_and_car_training_files_are_rgb(drc_root, tmp_path):
    dog = datasets.load_training_set('dog', 8, data_root=drc_root, cache_dir=tmp_path)
    assert dog.name == 'DRC_dog8split0' and len(dog) == 2
    assert_colour(dog[0], RED)  # tall image: centred square; and red stays red (RGB, not cv2's BGR)
    assert_colour(dog[1], RED)  # train_orig/orig, not the decoy under data_mrcnn/train/resized
    car = datasets.load_training_set('car', 8, data_root=drc_root, cache_dir=tmp_path)
    assert car.name == 'DRC_car8split0' and len(car) == 2
    assert_colour(car[0], RED)
    assert_colour(car[1], (0, 0, 0))


def test_training_crop_matches_pil_bilinear(drc_root, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    save(str(drc_root / 'cars/data_mrcnn/train/orig/5_orig.png'), pixels)
    car = datasets.load_training_set('car', 16, data_root=drc_root, cache_dir=tmp_path)
    left = (53 - 37) // 2
    expected = Image.fromarray(pixels[:, left:left + 37]).resize((16, 16), Image.BILINEAR)
    np.testing.assert_array_equal(car[0], np.asarray(expected).transpose(2, 0, 1))


def test_cub_test_split_crop_and_soft_mask(drc_root):
    ts = datasets.load_test_set('cub', 8, data_root=drc_root)
    assert ts.name == 'DRC_cub8test' and len(ts) == 2
    image, mask = ts[0]
    assert image.dtype.is_floating_point and image.shape == (3, 8, 8) and mask.shape == (8, 8)
    assert_red(image)  # the bbox crop is all red
    assert set(np.unique(mask.numpy())) == {0, 1} and str(mask.dtype) == 'torch.int64'
    assert (mask[:, :3] == 1).all() and (mask[:, 5:] == 0).all()  # grey 200 -> fg, grey 100 -> bg
    image, mask = ts[1]  # box clipped to the image, non-square, then stretched: still all red, no black padding
    assert_red(image)
    assert (mask == 1).all()


def test_cub_mask_size_follows_mask_size(drc_root):
    ts = datasets.load_test_set('cub', 8, mask_size=16, data_root=drc_root)
    assert ts[0][0].shape == (3, 8, 8) and ts[0][1].shape == (16, 16)


def test_dog_car_test_split_masks(drc_root):
    dog = datasets.load_test_set('dog', 8, mask_size=16, data_root=drc_root)
    assert dog.name == 'DRC_dog8test' and len(dog) == 1
    image, mask = dog[0]
    assert_red(image)
    assert (mask[:, :8] == 1).all() and (mask[:, 8:] == 0).all()
    # convert('1') dithers grey (as the original did), unlike a plain threshold: a uniform 128 comes out mixed.
    car = datasets.load_test_set('car', 16, data_root=drc_root)
    assert 0.3 < car[0][1].float().mean() < 0.7


# ------------------------------------------------------------------------------------------------------------------
# Generic sources.

def test_image_folder_recursive(tmp_path):
    folder = tmp_path / 'photos'
    save(str(folder / 'b.png'), solid(10, 20, GREEN))
    save(str(folder / 'sub/a.jpg'), solid(30, 30, RED), fmt='JPEG')
    (folder / 'notes.txt').write_text('not an image')
    ds = datasets.load_training_set(str(folder), 16, cache_dir=tmp_path / 'cache')
    assert ds.name == 'photos16' and len(ds) == 2  # sorted by relative path: b.png, sub/a.jpg
    assert_colour(ds[0], GREEN)
    assert_colour(ds[1], RED, tol=8)  # JPEG


def test_zip_dataset_tool_format(tmp_path):
    path = tmp_path / 'tiny.zip'
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('dataset.json', '{"labels": [["00000/img00000000.png", 3]]}')
        for i, colour in enumerate([RED, BLUE]):
            src = save(str(tmp_path / f'src{i}.png'), solid(8, 8, colour))
            z.write(src, f'00000/img{i:08d}.png')
    ds = datasets.load_training_set(str(path), 8, cache_dir=tmp_path / 'cache', mirror=True)
    assert ds.name == 'tiny8' and len(ds.images) == 2 and len(ds) == 4
    assert_colour(ds[0], RED)
    assert_colour(ds[1], BLUE)


def test_mirror_and_max_size(tmp_path):
    folder = tmp_path / 'grad'
    for i in range(6):
        a = np.zeros((8, 8, 3), np.uint8)
        a[:, :, 0] = np.arange(8) * 30  # a left-to-right ramp
        a[:, :, 1] = i
        save(str(folder / f'{i}.png'), a)
    ds = datasets.load_training_set(str(folder), 8, cache_dir=tmp_path, mirror=True)
    assert len(ds) == 12
    np.testing.assert_array_equal(ds[6], ds[0][:, :, ::-1])
    with pytest.raises(IndexError):
        ds[12]
    sub = datasets.load_training_set(str(folder), 8, cache_dir=tmp_path, max_size=3, seed=1)
    again = datasets.load_training_set(str(folder), 8, cache_dir=tmp_path, max_size=3, seed=1)
    ids = [int(sub[i][1, 0, 0]) for i in range(3)]
    assert len(sub) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    assert ids == [int(again[i][1, 0, 0]) for i in range(3)]


def test_pairs_folder(tmp_path):
    folder = tmp_path / 'mine'
    save(str(folder / 'images/x.jpg'), solid(12, 12, RED), fmt='JPEG')
    m = np.full((12, 12), 127, np.uint8)
    m[:, 6:] = 128  # > 127 is foreground
    save(str(folder / 'masks/x.png'), m)
    ts = datasets.load_test_set(str(folder), 12)
    assert ts.name == 'mine12' and len(ts) == 1
    mask = ts[0][1].numpy()
    assert (mask[:, :6] == 0).all() and (mask[:, 6:] == 1).all()
    assert datasets.load_test_set(str(folder), 6, mask_size=24)[0][1].shape == (24, 24)


# ------------------------------------------------------------------------------------------------------------------
# Synthetic.

def best_threshold_accuracy(image, mask):
    """Best pixel accuracy of any single-channel (R, G, B or grey) threshold, either polarity: an oracle baseline."""
    best, y = 0.0, mask.ravel()
    for channel in list(image.astype(np.float32)) + [image.mean(0)]:
        ys = y[np.argsort(channel.ravel(), kind='stable')]
        correct = np.concatenate([[0], np.cumsum(1 - ys)]) + ys.sum() - np.concatenate([[0], np.cumsum(ys)])
        best = max(best, correct.max() / y.size, 1 - correct.min() / y.size)
    return best


@pytest.fixture(scope='module')
def syn64():
    return datasets.make_builtin('synthetic', 200, 64)


def test_synthetic_deterministic_and_splits_differ(syn64):
    images, masks = syn64
    assert images.shape == (200, 3, 64, 64) and images.dtype == np.uint8
    assert masks.shape == (200, 64, 64) and set(np.unique(masks)) == {0, 1}
    prefix = datasets.make_builtin('synthetic', 10, 64)  # image i depends on (seed, split, i) only
    np.testing.assert_array_equal(prefix[0], images[:10])
    np.testing.assert_array_equal(prefix[1], masks[:10])
    test = datasets.make_builtin('synthetic', 10, 64, split='test')
    other = datasets.make_builtin('synthetic', 10, 64, seed=1)
    assert (test[1] != masks[:10]).any() and (other[1] != masks[:10]).any()
    assert not any((t == images[:50]).all(axis=(1, 2, 3)).any() for t in test[0])


def test_synthetic_area_and_framing(syn64):
    _, masks = syn64
    area = masks.mean(axis=(1, 2))
    assert area.min() >= 0.15 and area.max() <= 0.50
    assert (masks[:, 0].max(1) == 0).mean() > 0.9  # objects rarely touch the border


def test_synthetic_not_trivially_separable(syn64):
    images, masks = syn64
    acc = np.array([best_threshold_accuracy(i, m) for i, m in zip(images[:100], masks[:100])])
    assert np.median(acc) < 0.93 and (acc > 0.97).mean() < 0.3
    assert acc.mean() > 0.6  # ...but the object is not invisible either


def test_synthetic_masks_resolution_independent(syn64):
    _, masks = syn64
    coarse = datasets.make_builtin('synthetic', 20, 32)[1]
    down = masks[:20].reshape(20, 32, 2, 32, 2).mean(axis=(2, 4))
    agree = (coarse == (down > 0.5))[(down == 0) | (down == 1)]  # away from edges
    assert agree.mean() > 0.999


def test_synthetic_edges_antialiased(syn64):
    images, masks = syn64
    coverage = synthetic._coverage(np.stack([synthetic._scene(np.random.default_rng([0, 0, 0]))['profile']]),
                                   np.float32([0.5]), np.float32([0.5]), 64)
    assert ((coverage > 0) & (coverage < 1)).any()


def test_synthetic_training_and_test_sets(tmp_path):
    train = datasets.load_training_set('synthetic', 32, cache_dir=tmp_path, n_synthetic=64)
    assert train.name == 'synthetic32' and isinstance(train.images, np.memmap) and len(train) == 64
    np.testing.assert_array_equal(train.images, datasets.make_builtin('synthetic', 64, 32)[0])
    test = datasets.load_test_set('synthetic', 32, mask_size=64, n_synthetic=16)
    assert len(test) == 16 and test[0][0].shape == (3, 32, 32) and test[0][1].shape == (64, 64)
    np.testing.assert_array_equal(test.masks, datasets.make_builtin('synthetic', 16, 64, split='test')[1])


# ------------------------------------------------------------------------------------------------------------------
# Cache.

def test_cache_reused_then_rebuilt_on_change(tmp_path, monkeypatch):
    folder, cache_dir = tmp_path / 'imgs', tmp_path / 'cache'
    save(str(folder / 'a.png'), solid(8, 8, RED))
    save(str(folder / 'b.png'), solid(8, 8, BLUE))
    first = datasets.load_training_set(str(folder), 8, cache_dir=cache_dir)
    files = os.listdir(cache_dir)
    assert len(files) == 1 and isinstance(first.images, np.memmap)
    assert np.load(cache_dir / files[0], mmap_mode='r').shape == (2, 3, 8, 8)

    with monkeypatch.context() as m:  # a second load must not decode anything
        m.setattr(dataset, 'train_crop', lambda *a: pytest.fail('decoded again'))
        again = datasets.load_training_set(str(folder), 8, cache_dir=cache_dir)
    assert os.listdir(cache_dir) == files
    np.testing.assert_array_equal(again.images, first.images)

    save(str(folder / 'b.png'), solid(8, 8, GREEN))
    os.utime(folder / 'b.png', ns=(1, 1))  # a different mtime even on coarse-clock file systems
    changed = datasets.load_training_set(str(folder), 8, cache_dir=cache_dir)
    assert_colour(changed[1], GREEN)
    assert len(os.listdir(cache_dir)) == 1 and os.listdir(cache_dir) != files  # the stale file is gone

    save(str(folder / 'c.png'), solid(8, 8, RED))  # a new file changes the list
    assert len(datasets.load_training_set(str(folder), 8, cache_dir=cache_dir)) == 3
    datasets.load_training_set(str(folder), 4, cache_dir=cache_dir)  # another resolution: its own entry
    assert len(os.listdir(cache_dir)) == 2


def test_cache_dir_default_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv('ILSGAN_CACHE_DIR', str(tmp_path / 'envcache'))
    assert cache.default_cache_dir() == str(tmp_path / 'envcache')
    datasets.load_training_set('synthetic', 8, n_synthetic=4)
    assert len(os.listdir(tmp_path / 'envcache')) == 1
    monkeypatch.delenv('ILSGAN_CACHE_DIR')
    assert cache.default_cache_dir() == os.path.join(os.path.expanduser('~'), '.cache', 'ilsgan')


def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('ILSGAN_DATA_ROOT', raising=False)
    assert datasets.resolve_data_root() == str(tmp_path / 'datasets')
    monkeypatch.setenv('ILSGAN_DATA_ROOT', '/data/drc')
    assert datasets.resolve_data_root() == '/data/drc'
    assert datasets.resolve_data_root('/x') == '/x'


def test_parallel_map_keeps_order_and_errors():
    assert list(parallel.ordered_map(lambda i: i * i, 40, workers=2)) == [i * i for i in range(40)]

    def fail(i):
        if i == 7:
            raise UserError('item 7 is bad')
        return i
    with pytest.raises(UserError, match='item 7'):
        list(parallel.ordered_map(fail, 20, workers=2))


# ------------------------------------------------------------------------------------------------------------------
# Bad input: UserError naming the file.

def test_error_missing_root(tmp_path):
    with pytest.raises(UserError, match='birds'):
        datasets.load_training_set('cub', 8, data_root=tmp_path / 'nowhere', cache_dir=tmp_path)


@pytest.mark.parametrize('data, name', [('cub', 'train_val_test_split.txt'), ('dog', 'data_tr_sel.npy'),
                                        ('car', 'data_mrcnn_train_select.npy')])
def test_error_missing_split_file(drc_root, tmp_path, data, name):
    os.remove(drc_root / drc.FOLDERS[data] / name)
    with pytest.raises(UserError, match=name):
        datasets.load_training_set(data, 8, data_root=drc_root, cache_dir=tmp_path)


def test_error_missing_listed_image(drc_root, tmp_path):
    os.remove(drc_root / 'dogs/train_orig/orig/n02085620_1_orig.png')
    with pytest.raises(UserError, match='n02085620_1_orig.png'):
        datasets.load_training_set('dog', 8, data_root=drc_root, cache_dir=tmp_path)


def test_error_misaligned_cub_tables(drc_root, tmp_path):
    path = drc_root / 'birds/bounding_boxes.txt'
    path.write_text(path.read_text().replace('2 0.0', '9 0.0'))
    with pytest.raises(UserError, match='bounding_boxes.txt'):
        datasets.load_training_set('cub', 8, data_root=drc_root, cache_dir=tmp_path)


@pytest.mark.parametrize('content', [b'not a png at all', None])
def test_error_corrupt_image(drc_root, tmp_path, content):
    path = drc_root / 'cars/data_mrcnn/train/orig/5_orig.png'
    data = path.read_bytes()
    path.write_bytes(content or data[:len(data) // 2])  # garbage, or a truncated PNG
    with pytest.raises(UserError, match='5_orig.png'):
        datasets.load_training_set('car', 8, data_root=drc_root, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == ['drc']  # no half-written cache file


def test_error_mask_size_differs(drc_root, tmp_path):
    save(str(drc_root / 'dogs/data_mrcnn/test/resized/n02085620_7_maskresized.png'), np.zeros((10, 10), np.uint8))
    with pytest.raises(UserError, match='n02085620_7_maskresized.png'):
        datasets.load_test_set('dog', 8, data_root=drc_root)
    folder = tmp_path / 'pairs'
    save(str(folder / 'images/x.png'), solid(12, 12, RED))
    save(str(folder / 'masks/x.png'), np.zeros((10, 12), np.uint8))
    with pytest.raises(UserError, match=r'masks/x\.png'):
        datasets.load_test_set(str(folder), 8)


def test_error_missing_mask(tmp_path):
    folder = tmp_path / 'pairs'
    save(str(folder / 'images/x.png'), solid(12, 12, RED))
    os.makedirs(folder / 'masks')
    with pytest.raises(UserError, match=r'masks/x\.png'):
        datasets.load_test_set(str(folder), 8)


def test_error_empty_folder(tmp_path):
    os.makedirs(tmp_path / 'empty/sub')
    with pytest.raises(UserError, match='empty'):
        datasets.load_training_set(str(tmp_path / 'empty'), 8, cache_dir=tmp_path)


def test_error_unknown_name(tmp_path):
    with pytest.raises(UserError, match="'imagenet'"):
        datasets.load_training_set('imagenet', 8, cache_dir=tmp_path)
    with pytest.raises(UserError, match="'imagenet'"):
        datasets.load_test_set('imagenet', 8)


# ------------------------------------------------------------------------------------------------------------------
# CLI.

def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(datasets.__file__)))
    return subprocess.run([sys.executable, '-m', 'datasets', *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_check(drc_root, tmp_path):
    result = run_cli('check', '--data', 'cub', '--data-root', drc_root, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()[1:]}
    assert counts == {'train': 3, 'val': 1, 'test': 2}

    os.remove(drc_root / 'cars/data_mrcnn/test/resized/3_maskresized.png')
    result = run_cli('check', '--data', 'car', '--data-root', drc_root, cwd=tmp_path)
    assert result.returncode == 2 and '3_maskresized.png' in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and '1 files missing' in result.stderr


def test_cli_export_synthetic_reads_back(tmp_path):
    out = tmp_path / 'syn'
    result = run_cli('export-synthetic', '--outdir', out, '--n', 6, '--resolution', 32, '--split', 'test',
                     '--seed', 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(os.listdir(out / 'images')) == 6 and len(os.listdir(out / 'masks')) == 6
    assert Image.open(out / 'preview.png').size == (6 * 32, 2 * 32)
    images, masks = datasets.make_builtin('synthetic', 6, 32, seed=3, split='test')
    back = datasets.load_test_set(str(out), 32)
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.masks, masks)

    result = run_cli('export-synthetic', '--outdir', out, '--split', 'holdout', cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and '--split' in result.stderr
