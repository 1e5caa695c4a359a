"""Segmentation evaluation: metrics, U-Net, paired augmentation, and the CLIs end to end on tiny data."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dnnlib.util import UserError

import eval_segmentation
import eval_segmentation_eval128
import segment_photos
from metrics import seg_eval, self_train
from metrics.seg_augment import PRESETS, AugmentPipe, augment_pair, reshape_foreground
from metrics.segmentation import SegmentationMeter, confusion_matrix, confusion_scores, per_image_iou_dice
from metrics.unet import UNet

# ---------------------------------------------------------------------------------------------------------------------
# Metrics against hand-computed values.


def scores(pred, gt):
    meter = SegmentationMeter()
    meter.update(torch.tensor(pred)[None], torch.tensor(gt)[None])
    return meter.result()


def test_known_confusion():
    pred, gt = [[1, 1], [1, 0]], [[1, 0], [0, 0]]
    cm = confusion_matrix(torch.tensor(pred), torch.tensor(gt))
    assert cm.tolist() == [[1, 0], [2, 1]]  # rows = pred, cols = gt
    s = scores(pred, gt)
    assert s['pACC'] == pytest.approx(0.5)
    assert s['IoU'] == pytest.approx(1 / 3)  # tp 1 / (pred 3 + gt 1 - tp 1)
    assert s['mIoU'] == pytest.approx(1 / 3)  # bg: 1 / (1 + 3 - 1)
    assert s['DRC_IoU'] == pytest.approx(1 / 3)
    assert s['DRC_DICE'] == pytest.approx(0.5)  # 2 * 1 / (3 + 1)


def test_empty_and_full_masks():
    empty, full = [[0, 0], [0, 0]], [[1, 1], [1, 1]]
    s = scores(empty, empty)  # Convention: empty pred and empty gt is a perfect per-image answer.
    assert (s['DRC_IoU'], s['DRC_DICE'], s['pACC'], s['IoU'], s['mIoU']) == (1, 1, 1, 0, 0.5)
    s = scores(full, full)
    assert (s['DRC_IoU'], s['DRC_DICE'], s['pACC'], s['IoU'], s['mIoU']) == (1, 1, 1, 1, 0.5)
    s = scores(empty, full)
    assert (s['DRC_IoU'], s['DRC_DICE'], s['pACC'], s['IoU'], s['mIoU']) == (0, 0, 0, 0, 0)


def test_meter_pools_pixels_but_averages_images():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    gt = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]]])
    meter = SegmentationMeter()
    meter.update(pred[:1], gt[:1])
    meter.update(pred[1:], gt[1:])
    s = meter.result()
    iou, dice = per_image_iou_dice(pred, gt)
    assert iou.tolist() == [0.5, 1.0] and dice.tolist() == [pytest.approx(2 / 3), 1.0]
    assert s['DRC_IoU'] == pytest.approx(0.75) and s['DRC_DICE'] == pytest.approx(5 / 6)
    assert s['IoU'] == pytest.approx(0.5) and s['pACC'] == pytest.approx(7 / 8)
    assert confusion_scores(meter.cm)['mIoU'] == pytest.approx((0.5 + 6 / 7) / 2)


# ---------------------------------------------------------------------------------------------------------------------
# U-Net.


def test_unet_size_names_and_shapes():
    net = UNet()
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 13_395_394
    names = [n for n, _ in net.named_children()]
    assert names == ['inc', 'down1', 'down2', 'down3', 'down4', 'up1', 'up2', 'up3', 'up4', 'outc']
    net.eval()
    with torch.no_grad():
        for size in (64, 128):
            assert net(torch.zeros(1, 3, size, size)).shape == (1, 2, size, size)


def test_narrow_unet_keeps_the_names_and_its_checkpoint_loads_at_its_width(tmp_path):
    wide, narrow = UNet().state_dict(), UNet(width=16).state_dict()
    assert list(wide) == list(narrow)
    assert narrow['inc.0.weight'].shape == (16, 3, 3, 3) and narrow['outc.weight'].shape == (2, 16, 1, 1)
    torch.manual_seed(0)
    net = UNet(width=16)
    seg_eval.save_checkpoint(tmp_path / 'network-snapshot-000001.pth', net, torch.optim.Adam(net.parameters()), 1)
    loaded = seg_eval.load_segmenter(str(tmp_path / 'network-snapshot-000001.pth'))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


def test_predict_upsamples_logits_for_e128():
    net = UNet().eval()
    with torch.no_grad():
        assert seg_eval.predict(net, torch.zeros(2, 3, 64, 64), 128).shape == (2, 128, 128)
        assert seg_eval.predict(net, torch.zeros(1, 3, 16, 16), (30, 40)).shape == (1, 30, 40)


# ---------------------------------------------------------------------------------------------------------------------
# Augmentation.


def blobs(n=8, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    c = torch.rand(n, 2, generator=g) * size * 0.5 + size * 0.25
    r = torch.rand(n, generator=g) * size * 0.2 + size * 0.1
    return (((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) < r[:, None, None] ** 2).long()


def test_geom_keeps_image_and_mask_aligned():
    mask = blobs()
    image = torch.nn.functional.one_hot(mask, 3).permute(0, 3, 1, 2).float()  # Image content == one-hot mask.
    aug_image, aug_mask = augment_pair(AugmentPipe(**PRESETS['geom']), image, mask, torch.Generator().manual_seed(1))
    assert not torch.equal(aug_mask, mask)  # Something moved ...
    assert torch.equal(aug_image[:, :2].argmax(1), aug_mask)  # ... and the image moved with it, padding included.


def test_color_leaves_masks_alone_and_is_seeded():
    mask = blobs()
    image = torch.rand(len(mask), 3, 32, 32) * 2 - 1
    pipe = AugmentPipe(**PRESETS['color'])
    a_img, a_mask = augment_pair(pipe, image, mask, torch.Generator().manual_seed(3))
    b_img, _ = augment_pair(pipe, image, mask, torch.Generator().manual_seed(3))
    assert torch.equal(a_mask, mask) and not torch.equal(a_img, image)
    assert torch.equal(a_img, b_img)


def test_color_matrices_keep_grey_and_luma_axis():
    pipe = AugmentPipe(hue=1, saturation=1)
    c = pipe.sample_params(16, torch.Generator().manual_seed(0))['color']
    grey = torch.tensor([0.3, 0.3, 0.3, 1.0])
    assert torch.allclose(c @ grey, grey.expand(16, 4), atol=1e-5)
    assert torch.equal(augment_pair(AugmentPipe(), torch.ones(2, 3, 4, 4), torch.ones(2, 4, 4).long())[0],
                       torch.ones(2, 3, 4, 4))


def test_reshape_foreground_bends_the_object_and_its_mask_together():
    mask = blobs(8, 32).float()[:, None]
    soft = torch.nn.functional.avg_pool2d(mask, 3, 1, 1)  # Soft edges, as a generator's.
    bg = torch.rand(8, 3, 32, 32) * 2 - 1
    fg = torch.ones(8, 3, 32, 32)  # A flat foreground: the composite then encodes the mask it was made with.
    image, bent = reshape_foreground(bg, fg, soft, 0.0)
    assert torch.equal(bent, soft) and torch.allclose(image, (1 - soft) * bg + soft * fg)  # 0: as drawn.

    image, bent = reshape_foreground(bg, fg, soft, 0.15, torch.Generator().manual_seed(0))
    assert torch.allclose(image, (1 - bent) * bg + bent * fg)  # The label is the mask the image was made with ...
    assert torch.equal(image[(bent == 0).expand_as(image)], bg[(bent == 0).expand_as(bg)])  # ... on the same bg.
    moved = ((bent > 0.5) != (soft > 0.5)).float().mean((1, 2, 3))
    assert (moved > 0.02).all()  # Every shape changed,
    assert ((bent > 0.5).float().mean() / (soft > 0.5).float().mean() - 1).abs() < 0.2  # and sizes kept on average.
    again, _ = reshape_foreground(bg, fg, soft, 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(again, image)


def test_schedule_and_sampler():
    assert seg_eval.validation_iters(6000) == [20, 1020, 2020, 3020, 4020, 5020, 6000]
    assert seg_eval.validation_iters(600) == [20, 120, 220, 320, 420, 520, 600]
    assert seg_eval.validation_iters(10) == [5, 10] and seg_eval.validation_iters(1) == [1]
    sampler = seg_eval.EpochSampler(10, seed=0)
    stream = torch.cat([sampler.indices(i, 4) for i in range(5)])  # 20 draws = 2 epochs, batches span epochs.
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(seg_eval.EpochSampler(10, seed=0).indices(3, 4), stream[12:16])

    assert seg_eval.schedule(600, 0) == (600, seg_eval.validation_iters(600))
    assert seg_eval.schedule(600, 2) == (1200, seg_eval.validation_iters(600) + [900, 1200])  # Each round ends one.
    assert self_train.round_starts(600, 2) == [600, 900] and self_train.round_starts(1, 1) == [1]


class FixedLogits(torch.nn.Module):
    """A 'segmenter' whose foreground probability is the image's red channel mapped from [-1, 1] to [0, 1]."""

    def forward(self, x):
        p = ((x[:, 0] + 1) / 2).clamp(1e-6, 1 - 1e-6)
        return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)


def test_pseudo_labels_keep_only_confident_pixels_and_the_loss_skips_the_rest():
    red = torch.tensor([0, 12, 128, 200, 240, 255], dtype=torch.uint8)  # probabilities 0, .05, .5, .78, .94, 1
    images = red.reshape(1, 1, 1, 6).expand(2, 3, 1, 6).contiguous()
    labels = self_train.pseudo_labels(FixedLogits(), images, batch=1)
    u = self_train.UNSURE
    assert labels.tolist() == [[[0, 0, u, u, 1, 1]]] * 2

    # A training step's loss is the cross-entropy of the confident pixels alone.
    net = torch.nn.Conv2d(3, 2, 1)
    x = torch.rand(2, 3, 1, 6) * 2 - 1
    loss = seg_eval.train_step(net, torch.optim.SGD(net.parameters(), lr=0), AugmentPipe(), x, labels)
    sure = [0, 1, 4, 5]
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(net(x)[..., sure], labels[..., sure]))


# ---------------------------------------------------------------------------------------------------------------------
# End to end on tiny data.


def write_pairs(root, n, size, img_dir, mask_dir, seed=0):
    """n random-blob images with their masks; masks use the generator's round(255 alpha) RGB encoding."""
    masks = blobs(n, size, seed).numpy().astype(np.uint8)
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, img_dir))
    os.makedirs(os.path.join(root, mask_dir))
    for i, m in enumerate(masks):
        img = np.where(m[..., None] == 1, [220, 60, 40], [40, 120, 200]) + rng.integers(0, 30, (size, size, 3))
        Image.fromarray(img.astype(np.uint8)).save(os.path.join(root, img_dir, f'{i + 1:06d}.png'))
        Image.fromarray(np.repeat(m[..., None] * 255, 3, 2)).save(os.path.join(root, mask_dir, f'{i + 1:06d}.png'))
    return str(root)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """40 synthetic pairs at 16 px and a folder of 9 real pairs (images/ + masks/) at 48 px."""
    root = tmp_path_factory.mktemp('seg')
    return dict(root=root, syn=write_pairs(root / 'syn', 40, 16, 'img', 'mask'),
                real=write_pairs(root / 'realpairs', 9, 48, 'images', 'masks', seed=1))


def invoke(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# 4 iterations: validation at the first tick (2) and at the end (4), enough to exercise selection.
RUN = ['--scale', 16, '--iters', 4, '--batch', 2, '--workers', 0, '--device', 'cpu']


@pytest.fixture(scope='module')
def e64_run(data):
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--outdir',
                    data['root'] / 'runs', *RUN)
    assert result.exit_code == 0, result.output
    return data['root'] / 'runs' / '00000-realpairs-color_aug-16'


@pytest.mark.slow
def test_e64_cli_writes_everything(e64_run):
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'augment.png', 'seg-train_000002.png',
                 'seg-train_000004.png', 'seg-test.png', 'metric-val.jsonl', 'metric-test.jsonl', 'results.json',
                 'network-snapshot-000004.pth']:
        assert (e64_run / name).is_file(), name
    val = seg_eval.read_jsonl(e64_run / 'metric-val.jsonl')
    assert [r['iter'] for r in val] == [2, 4]
    test = seg_eval.read_jsonl(e64_run / 'metric-test.jsonl')
    assert set(test[0]) == {'results', 'metric', 'total_time', 'total_time_str', 'snapshot_pth', 'timestamp'}
    results = json.loads((e64_run / 'results.json').read_text())
    assert set(results) == {'pACC', 'IoU', 'mIoU', 'DRC_IoU', 'DRC_DICE', 'best_iter', 'unet_width', 'reshape'}
    assert results == dict(test[0]['results'], best_iter=seg_eval.best_val(val)['iter'], unet_width=64, reshape=0.0)
    ckpts = sorted(p.name for p in e64_run.glob('network-snapshot-*.pth'))  # Only the best and the last are kept.
    assert ckpts == sorted({seg_eval.snapshot_name(results['best_iter']), 'network-snapshot-000004.pth'})
    assert Image.open(e64_run / 'seg-test.png').size == (7 * 3 * 16, 2 * 16)  # 9 test images, fewer than 192.
    assert Image.open(e64_run / 'augment.png').size == (7 * 4 * 16, 6 * 16)  # 36 train pairs.
    assert Image.open(e64_run / 'seg-train_000004.png').size == (4 * 3 * 16, 16)  # 4 val pairs.
    assert [r['iter'] for r in seg_eval.read_jsonl(e64_run / 'stats.jsonl')] == [2, 4]
    assert '"metric": "test"' in (e64_run / 'log.txt').read_text()


@pytest.mark.slow
def test_test_only_and_cached_results(data, e64_run):
    results = json.loads((e64_run / 'results.json').read_text())
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--resume-from',
                    e64_run, '--test-only', *RUN)
    assert result.exit_code == 0, result.output
    assert len(seg_eval.read_jsonl(e64_run / 'metric-test.jsonl')) == 2
    assert json.loads((e64_run / 'results.json').read_text()) == results
    mtime = os.path.getmtime(e64_run / 'results.json')
    cached = seg_eval.run_segmentation(data['syn'], data['real'], str(e64_run), 16, 16, iters=4, batch=2)
    assert cached == results and os.path.getmtime(e64_run / 'results.json') == mtime
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--resume-from',
                    e64_run, '--test-only', *RUN[2:])  # Default --scale 64 is not what this run was trained with.
    assert result.exit_code == 2 and 'same settings' in result.stderr


@pytest.mark.slow
def test_resume_continues_exactly(data, e64_run, tmp_path):
    run = tmp_path / 'run'
    seg_eval.run_segmentation(data['syn'], data['real'], str(run), 16, 16, iters=4, batch=2, device='cpu', workers=0,
                              keep_all=True)
    for name in ('results.json', 'network-snapshot-000004.pth'):  # Now it looks like a run killed after iteration 2.
        os.remove(run / name)
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--resume-from',
                    run, *RUN)
    assert result.exit_code == 0, result.output
    assert [r['iter'] for r in seg_eval.read_jsonl(run / 'metric-val.jsonl')] == [2, 4]  # The stale 4 was dropped.
    a = torch.load(e64_run / 'network-snapshot-000004.pth', weights_only=True)['model']
    b = torch.load(run / 'network-snapshot-000004.pth', weights_only=True)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (run / 'results.json').read_text() == (e64_run / 'results.json').read_text()


def test_unet_width_is_recorded_and_a_resume_must_keep_it(data, tmp_path):
    run = tmp_path / 'run'
    results = seg_eval.run_segmentation(data['syn'], data['real'], str(run), 16, 16, iters=2, batch=2, device='cpu',
                                        workers=0, width=8)
    assert results['unet_width'] == 8
    os.remove(run / 'results.json')
    with pytest.raises(UserError, match='unet_width=8'):
        seg_eval.run_segmentation(data['syn'], data['real'], str(run), 16, 16, iters=2, batch=2, device='cpu',
                                  workers=0)


@pytest.mark.slow
def test_reshape_cli_trains_on_the_layers_and_records_it(data, tmp_path):
    syn = tmp_path / 'syn'
    shutil.copytree(data['syn'], syn)
    for layer in ('bg', 'fg'):  # A generator's sample folder also holds its layers.
        shutil.copytree(syn / 'img', syn / layer)
    result = invoke(eval_segmentation.main, '--syn-data', syn, '--real-data', data['real'], '--outdir', tmp_path / 'runs',
                    '--reshape', 0.15, *RUN)
    assert result.exit_code == 0, result.output
    run = tmp_path / 'runs' / '00000-realpairs-color_aug-16-reshape0.15'
    assert json.loads((run / 'results.json').read_text())['reshape'] == 0.15
    assert json.loads((run / 'training_options.json').read_text())['reshape'] == 0.15
    assert (run / 'augment.png').is_file()

    shutil.rmtree(syn / 'fg')
    result = CliRunner().invoke(eval_segmentation.main, ['--syn-data', str(syn), '--real-data', data['real'],
                                                         '--outdir', str(tmp_path / 'runs2'), '--reshape', '0.15',
                                                         *map(str, RUN)])
    assert result.exit_code == 2 and result.stderr.count('\n') == 1, result.stderr
    assert 'fg' in result.stderr and '--reshape' in result.stderr


@pytest.mark.slow
def test_self_training_cli_relabels_real_images_resumes_exactly_and_tests_the_last_net(data, tmp_path, monkeypatch):
    monkeypatch.setenv('ILSGAN_CACHE_DIR', str(tmp_path / 'cache'))
    unlabelled = os.path.join(data['real'], 'images')  # Only the images: no mask is read.
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--outdir',
                    tmp_path / 'runs', '--self-train', unlabelled, '--keep-all', *RUN)
    assert result.exit_code == 0, result.output
    run = tmp_path / 'runs' / '00000-realpairs-color_aug-16-self1'
    val = seg_eval.read_jsonl(run / 'metric-val.jsonl')
    assert [r['iter'] for r in val] == [2, 4, 6]  # 4 synthetic iterations, then one round of 2.
    results = json.loads((run / 'results.json').read_text())
    assert results['best_iter'] == 6 and results['self_train_rounds'] == 1
    assert results['self_train'] == os.path.abspath(unlabelled)
    assert 'Self-training round 1/1 from iteration 4' in (run / 'log.txt').read_text()

    killed = tmp_path / 'killed'  # As if killed during the round: its labels must be made again from the same net.
    shutil.copytree(run, killed)
    for name in ('results.json', 'network-snapshot-000006.pth'):
        os.remove(killed / name)
    result = invoke(eval_segmentation.main, '--syn-data', data['syn'], '--real-data', data['real'], '--resume-from',
                    killed, '--self-train', unlabelled, *RUN)
    assert result.exit_code == 0, result.output
    a = torch.load(run / 'network-snapshot-000006.pth', weights_only=True)['model']
    b = torch.load(killed / 'network-snapshot-000006.pth', weights_only=True)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((killed / 'results.json').read_text()) == results

    result = CliRunner().invoke(eval_segmentation.main, ['--syn-data', str(data['syn']), '--real-data', data['real'],
                                                         '--outdir', str(tmp_path / 'runs2'), '--self-train',
                                                         str(tmp_path / 'nowhere'), *map(str, RUN)])
    assert result.exit_code == 2 and result.stderr.count('\n') == 1, result.stderr
    assert 'nowhere' in result.stderr and not (tmp_path / 'runs2').exists()


@pytest.mark.slow
def test_segment_photos(e64_run, tmp_path):
    photos = tmp_path / 'photos'
    photos.mkdir()
    Image.new('RGB', (40, 30), (200, 50, 50)).save(photos / 'a.jpg')
    Image.new('RGB', (20, 20), (20, 50, 50)).save(photos / 'b.png')
    result = invoke(segment_photos.main, '--network', e64_run / 'network-snapshot-000004.pth', '--input', photos,
                    '--outdir', tmp_path / 'cut')  # --size defaults to the run's input size (16).
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / 'cut' / 'a_mask.png').size == (40, 30)
    cutout = Image.open(tmp_path / 'cut' / 'a_cutout.png')
    assert cutout.mode == 'RGBA' and cutout.size == (40, 30)
    assert np.array_equal(np.asarray(cutout)[..., 3], np.asarray(Image.open(tmp_path / 'cut' / 'a_mask.png')))
    assert (tmp_path / 'cut' / 'b_cutout.png').is_file()


@pytest.mark.slow
def test_e128_scores_at_128(data, tmp_path):
    result = invoke(eval_segmentation_eval128.main, '--syn-data', data['syn'], '--real-data', data['real'],
                    '--outdir', tmp_path, '--iters', 1, '--batch', 2, '--workers', 0, '--device', 'cpu')
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / '00000-realpairs-color_aug-eval128'
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert (options['input_size'], options['score_size']) == (64, 128)
    assert Image.open(run_dir / 'seg-test.png').size == (7 * 3 * 128, 2 * 128)  # Scored tiles are 128 x 128.
    assert Image.open(run_dir / 'seg-train_000001.png').size[1] == 128


def test_synthetic_real_data(data, tmp_path):
    results = seg_eval.run_segmentation(data['syn'], 'synthetic', str(tmp_path / 'run'), 16, 16, iters=1, batch=2,
                                        device='cpu', workers=0)
    assert set(results) == {'pACC', 'IoU', 'mIoU', 'DRC_IoU', 'DRC_DICE', 'best_iter', 'unet_width', 'reshape'}


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2.


def bad_syn(root, kind):
    syn = write_pairs(root / kind, 4, 16, 'img', 'mask')
    if kind == 'empty':
        for f in os.listdir(os.path.join(syn, 'img')):
            os.remove(os.path.join(syn, 'img', f))
    elif kind == 'count':
        os.remove(os.path.join(syn, 'mask', '000004.png'))
    elif kind == 'resolution':
        Image.new('RGB', (8, 8)).save(os.path.join(syn, 'mask', '000002.png'))
    elif kind == 'corrupt':
        with open(os.path.join(syn, 'img', '000003.png'), 'wb') as f:
            f.write(b'not a png')
    return syn


@pytest.mark.parametrize('kind', ['missing', 'empty', 'count', 'resolution', 'corrupt', 'real'])
def test_bad_input_is_one_line(data, tmp_path, kind):
    syn = str(tmp_path / 'nowhere') if kind == 'missing' else data['syn'] if kind == 'real' else bad_syn(tmp_path, kind)
    real = 'imagenet' if kind == 'real' else data['real']
    result = CliRunner().invoke(eval_segmentation.main, ['--syn-data', syn, '--real-data', real, '--outdir',
                                                         str(tmp_path / 'runs'), *map(str, RUN)])
    assert result.exit_code == 2
    assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1, result.stderr


def test_check_real_data(data, tmp_path):
    for ok in ('synthetic', data['real']):
        seg_eval.check_real_data(ok)
    with pytest.raises(UserError, match='unknown real data'):
        seg_eval.check_real_data(str(tmp_path))  # A folder without images/ + masks/.
    with pytest.raises(UserError, match='DRC cub folder not found'):
        seg_eval.check_real_data('cub', data_root=str(tmp_path))


def test_bad_input_exit_code_in_a_real_process(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, 'eval_segmentation_eval128.py', '--syn-data', str(tmp_path / 'nowhere'),
                           '--real-data', 'synthetic'], cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count('\n') == 1 and 'does not exist' in proc.stderr


def test_read_jsonl_drops_a_line_cut_short(tmp_path):
    path = tmp_path / 'metric-val.jsonl'
    path.write_text('{"iter": 20}\n{"iter": 1020}\n{"iter": 20', encoding='utf-8')
    assert [r['iter'] for r in seg_eval.read_jsonl(path)] == [20, 1020]
