"""Mask polarity and shape diversity (training/mask_stats.py), and what the pipeline does with them."""
import os

import numpy as np
import PIL.Image
import pytest
import torch

from metrics import samples
from pipeline import demo_model
from training import checkpoint, mask_stats


def disc(n=32, cx=16, cy=16, r=8):
    y, x = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing='ij')
    return (((x - cx) ** 2 + (y - cy) ** 2) < r ** 2).float()


def square(n=32, cx=16, cy=16, half=7):
    m = torch.zeros(n, n)
    m[cy - half:cy + half, cx - half:cx + half] = 1
    return m


def test_border_and_centre():
    border, centre = mask_stats.border_and_centre(torch.stack([disc(), 1 - disc()]))
    assert border[0] == 0 and centre[0] > 0.75
    assert border[1] == 1 and centre[1] < 0.25


def test_centred_moves_the_centroid_to_the_middle():
    moved = mask_stats.centred(torch.stack([disc(cx=9, cy=22), disc()]))
    assert torch.equal(moved[0], moved[1])
    assert torch.equal(moved[1], disc())


def test_shape_iou_hand_made_cases():
    same_shape = torch.stack([disc(cx=10, cy=10), disc(cx=20, cy=14), disc(cx=15, cy=21)])
    assert mask_stats.shape_iou(same_shape) == pytest.approx(1.0)
    # A disc and a square of similar area overlap partly: their IoU, computed by hand.
    a, b = disc(r=8).bool(), square(half=7).bool()
    expected = float((a & b).sum() / (a | b).sum())
    assert mask_stats.shape_iou(torch.stack([a.float(), b.float()])) == pytest.approx(expected)
    assert 0.6 < expected < 0.95
    varied = torch.stack([disc(r=4), disc(r=12), square(half=3), square(half=12)])
    assert mask_stats.shape_iou(varied) < 0.45
    assert np.isnan(mask_stats.shape_iou(disc()[None]))
    empty = torch.zeros(2, 32, 32)
    assert mask_stats.shape_iou(empty) == 1.0  # two empty masks are the same (empty) shape


def test_area_sd_hand_made_cases():
    # Squares of side 8 and 16 on a 32 px image: areas 1/16 and 1/4, so the SD is half their difference.
    two_sizes = torch.stack([square(half=4), square(half=8)] * 3)
    s = mask_stats.summarize(two_sizes)
    assert s['area_sd'] == pytest.approx((1 / 4 - 1 / 16) / 2)
    assert mask_stats.summarize(torch.stack([disc()] * 5))['area_sd'] == 0
    # One size for every sample warns only against a reference that does vary.
    one_size = mask_stats.summarize(torch.stack([disc(cx=14 + i) for i in range(6)]))
    assert 'one_size' in mask_stats.warnings(one_size, reference_area_sd=0.08)
    assert 'one_size' not in mask_stats.warnings(s, reference_area_sd=0.08)
    assert 'one_size' not in mask_stats.warnings(one_size)
    # Summaries logged before area_sd existed still get the other warnings.
    old = {k: v for k, v in one_size.items() if k != 'area_sd'}
    assert set(mask_stats.warnings(old, reference_area_sd=0.08)) == {'collapsed'}


def test_summary_and_warnings():
    upright = torch.stack([disc(cx=14 + i, r=6 + i) for i in range(6)])
    s = mask_stats.summarize(upright)
    assert s['upright'] == 1 and s['inverted'] == 0 and s['binary'] == 1
    assert mask_stats.warnings(s) == {}
    assert set(mask_stats.warnings(mask_stats.summarize(1 - upright))) == {'inverted'}
    assert set(mask_stats.warnings(mask_stats.summarize(torch.zeros(4, 32, 32)))) == {'empty'}
    assert set(mask_stats.warnings(mask_stats.summarize(torch.ones(4, 32, 32)))) == {'full'}
    one_shape = torch.stack([disc(cx=12 + i, cy=12 + i) for i in range(6)])
    assert set(mask_stats.warnings(mask_stats.summarize(one_shape))) == {'collapsed'}
    assert 'less_varied' in mask_stats.warnings(s, reference_shape_iou=0.2)
    assert 'less_varied' not in mask_stats.warnings(s, reference_shape_iou=s['shape_iou'])
    soft = torch.full((4, 32, 32), 0.5)  # a blank mask at initialisation: neither way round, no collapse
    assert mask_stats.warnings(mask_stats.summarize(soft)) == {}
    # A finished model is also held to formed masks on the object; the training log is not (early ticks are soft).
    assert mask_stats.warnings(mask_stats.summarize(upright), finished=True) == {}
    assert set(mask_stats.warnings(mask_stats.summarize(soft), finished=True)) == {'unformed'}
    speckle = (torch.rand(6, 32, 32, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    s_speckle = mask_stats.summarize(speckle)  # binary scatter: its low shape IoU is not variety
    assert s_speckle['binary'] == 1 and s_speckle['shape_iou'] < 0.3
    assert mask_stats.warnings(s_speckle) == {}
    assert set(mask_stats.warnings(s_speckle, finished=True)) == {'off_object'}
    assert set(mask_stats.warnings(mask_stats.summarize(1 - upright), finished=True)) == {'inverted'}
    assert set(mask_stats.warnings(mask_stats.summarize(torch.zeros(4, 32, 32)), finished=True)) == {'empty'}
    leaning = 0.4 + 0.2 * (1 - torch.stack([disc()] * 4))  # soft masks that lean the wrong way: not yet formed
    s = mask_stats.summarize(leaning)
    assert s['inverted'] == 1 and mask_stats.warnings(s) == {} and not mask_stats.decide_flip(s, 'auto')


def test_decide_flip():
    upright = mask_stats.summarize(torch.stack([disc(), square()]))
    inverted = mask_stats.summarize(1 - torch.stack([disc(), square()]))
    assert not mask_stats.decide_flip(upright, 'auto') and mask_stats.decide_flip(inverted, 'auto')
    assert mask_stats.decide_flip(upright, 'flip') and not mask_stats.decide_flip(inverted, 'keep')
    with pytest.raises(ValueError):
        mask_stats.decide_flip(upright, 'sometimes')


# ------------------------------------------------------------------------------------------------------------------
# On a real model: the shipped one, and the same model with its mask logit negated (a deliberately inverted run).

def shipped_snapshot():
    kimg = demo_model.shipped_info()['kimg']
    return os.path.join(demo_model.SHIPPED_DIR, f'network-snapshot-{kimg:06d}.pt')


def inverted_copy(path, dest):
    """The same snapshot with mask = 1 - mask: the skip ToRGB outputs of the mask logit are negated."""
    G = checkpoint.load_snapshot(path)['G_ema']
    with torch.no_grad():
        for name, module in G.synthesis_fg.named_modules():
            if name.endswith('torgb'):
                module.weight[-1].neg_()
                module.bias[-1].neg_()
    checkpoint.save_snapshot(dest, {'G_ema': G}, training_set_kwargs={'data': 'synthetic', 'resolution': 32},
                             extra={'kimg': 0})
    return dest


def masks_of(path, n=128):
    G = checkpoint.load_snapshot(path)['G_ema']
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return G(z, None, noise_mode='const', return_layers=True)['mask']


def test_shipped_model_upright_and_inverted_copy_flagged(tmp_path):
    shipped = mask_stats.summarize(masks_of(shipped_snapshot()))
    assert shipped['upright'] > 0.9 and 'inverted' not in mask_stats.warnings(shipped)
    inverted = mask_stats.summarize(masks_of(inverted_copy(shipped_snapshot(), str(tmp_path / 'inv.pt'))))
    assert 'inverted' in mask_stats.warnings(inverted)
    assert mask_stats.decide_flip(inverted, 'auto')


def read_layer(outdir, layer, i):
    return np.asarray(PIL.Image.open(samples.png_path(outdir, layer, i))).astype(int)


def test_generate_samples_auto_flips_an_inverted_model(tmp_path, capsys):
    original, inverted = shipped_snapshot(), inverted_copy(shipped_snapshot(), str(tmp_path / 'inv.pt'))
    kept = samples.generate_samples(original, str(tmp_path / 'kept'), 6, batch=3, polarity='keep')
    auto = samples.generate_samples(inverted, str(tmp_path / 'auto'), 6, batch=3)
    assert 'masks look inverted' in capsys.readouterr().out
    record = samples.read_json(os.path.join(auto, samples.SETTINGS_NAME))
    assert record['flipped'] and record['polarity'] == 'auto' and record['mask_check']['inverted'] > 0.5
    assert record['mask_check_written']['upright'] > 0.9
    for i in range(6):
        # The inverted model's mask, flipped, is the original's (up to 8-bit rounding); its layers swap roles:
        # the copy's background network is the original's, and it now holds the written foreground.
        assert np.abs(read_layer(auto, 'mask', i) - read_layer(kept, 'mask', i)).max() <= 1
        assert np.array_equal(read_layer(auto, 'fg', i), read_layer(kept, 'bg', i))
        assert np.array_equal(read_layer(auto, 'bg', i), read_layer(kept, 'fg', i))
        m = read_layer(auto, 'mask', i) / 255
        composite = m * read_layer(auto, 'fg', i) + (1 - m) * read_layer(auto, 'bg', i)
        assert np.abs(composite - read_layer(auto, 'img', i)).mean() < 2  # the written layers compose the image
    kept_record = samples.read_json(os.path.join(kept, samples.SETTINGS_NAME))
    assert not kept_record['flipped']
    with pytest.raises(Exception, match='polarity'):
        samples.generate_samples(inverted, auto, 6, batch=3, polarity='keep')  # a folder keeps its polarity
