"""The built-in `collage` dataset: photographs cut and pasted, with exact masks."""
import os
import subprocess
import sys

import numpy as np
import pytest

import datasets
from datasets import collage
from dnnlib.util import UserError
from test_datasets import best_threshold_accuracy


@pytest.fixture(scope='module')
def col32():
    return datasets.make_builtin('collage', 96, 32)


def test_deterministic_and_splits_differ(col32):
    images, masks = col32
    assert images.shape == (96, 3, 32, 32) and images.dtype == np.uint8
    assert masks.shape == (96, 32, 32) and set(np.unique(masks)) == {0, 1}
    prefix = datasets.make_builtin('collage', 5, 32)  # image i depends on (seed, split, i) only
    np.testing.assert_array_equal(prefix[0], images[:5])
    np.testing.assert_array_equal(prefix[1], masks[:5])
    for split in ('test', 'val'):
        other = datasets.make_builtin('collage', 5, 32, split=split)[0]
        assert not any((o == images).all(axis=(1, 2, 3)).any() for o in other)


def test_area_framing_and_variety(col32):
    _, masks = col32
    area = masks.mean(axis=(1, 2))
    assert area.min() >= 0.12 and area.max() <= 0.48
    border = np.concatenate([masks[:, 0], masks[:, -1], masks[:, :, 0], masks[:, :, -1]], axis=1).mean(1)
    assert (border < 0.1).mean() > 0.9  # objects rarely reach the frame
    # Shapes differ: few pairs of masks overlap as much as two draws of one shape would.
    flat = masks.reshape(len(masks), -1).astype(bool)
    inter = (flat[:, None] & flat[None]).sum(-1)
    union = (flat[:, None] | flat[None]).sum(-1)
    iou = (inter / union)[np.triu_indices(len(masks), 1)]
    assert np.median(iou) < 0.6


def test_masks_match_images():
    for i in range(6):
        scene = collage.render_scene(64, 0, 'test', i)
        image, fg, bg, alpha, mask = (scene[k] for k in ('image', 'fg', 'bg', 'alpha', 'mask'))
        inside, outside = alpha > 0.99, alpha < 0.01
        assert inside.mean() > 0.08 and outside.mean() > 0.4
        assert np.array_equal(mask, (alpha > 0.5).astype(np.uint8))
        # The image is the foreground where the mask is 1 and the background where it is 0 (up to sensor noise).
        assert np.abs(image - fg)[:, inside].mean() < 0.03
        assert np.abs(image - bg)[:, outside].mean() < 0.03
        layers_differ = np.abs(fg - bg).mean(0)
        assert layers_differ[inside].mean() > 0.05  # so the two checks above are not the same check
    images, masks = datasets.make_builtin('collage', 2, 64, split='test')
    first = collage.render_scene(64, 0, 'test', 0)
    assert np.array_equal(masks[0], first['mask'])
    assert np.abs(images[0] / 255 - first['image']).max() <= 0.5 / 255 + 1e-6


def test_masks_resolution_independent():
    fine = datasets.make_builtin('collage', 12, 64)[1]
    coarse = datasets.make_builtin('collage', 12, 32)[1]
    down = fine.reshape(12, 32, 2, 32, 2).mean(axis=(2, 4))
    agree = (coarse == (down > 0.5))[(down == 0) | (down == 1)]
    assert agree.mean() > 0.995


def test_not_trivially_separable(col32):
    images, masks = col32
    acc = np.array([best_threshold_accuracy(i, m) for i, m in zip(images, masks)])
    assert np.median(acc) < 0.93
    assert acc.mean() > 0.6


def test_training_and_val_sets(tmp_path):
    train = datasets.load_training_set('collage', 16, cache_dir=tmp_path, n_synthetic=24)
    assert train.name == 'collage16' and len(train) == 24
    np.testing.assert_array_equal(train.images, datasets.make_builtin('collage', 24, 16)[0])
    val = datasets.load_test_set('collage:val', 16, n_synthetic=8)
    test = datasets.load_test_set('collage', 16, n_synthetic=8)
    assert np.array_equal(datasets.load_test_set('collage:test', 16, n_synthetic=8).images, test.images)
    with pytest.raises(UserError, match='unknown split'):
        datasets.load_test_set('collage:holdout', 16)
    assert val.name == 'collage16val' and test.name == 'collage16test'
    assert not np.array_equal(val.images, test.images)


def test_photographs_listed_with_terms():
    files = set(os.listdir(collage.photo_dir()))
    assert set(collage.PHOTOS) <= files
    assert all(terms for terms in collage.PHOTOS.values())


def test_bad_resolution_and_missing_photos(monkeypatch):
    with pytest.raises(UserError, match='powers of two'):
        datasets.make_builtin('collage', 1, 48)
    monkeypatch.setattr(collage, '_photos', None)
    monkeypatch.setattr(collage.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(UserError, match='pip install scikit-image'):
        datasets.make_builtin('collage', 1, 32)


def test_export_cli(tmp_path, repo_root):
    out = tmp_path / 'export'
    result = subprocess.run([sys.executable, '-m', 'datasets', 'export-synthetic', '--data', 'collage', '--outdir',
                             str(out), '--n', '4', '--resolution', '32', '--split', 'val'],
                            cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(os.listdir(out / 'images')) == 4 and (out / 'preview.png').is_file()
    test = datasets.load_test_set(str(out), 32)  # the export reads back as an image+mask test folder
    np.testing.assert_array_equal(test.masks, datasets.make_builtin('collage', 4, 32, split='val')[1])
