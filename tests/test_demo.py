"""`make demo` end to end at toy size, the shipped demo model, and its export."""
import json
import os
import subprocess
import sys

import PIL.Image
import pytest
import torch

from dnnlib.util import UserError
from pipeline import demo_model
from training import checkpoint, networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_run(run_dir, kimgs=(0, 3), resolution=8):
    """A run directory as training leaves it: snapshots, options, stats per tick and the grids of each snapshot."""
    os.makedirs(run_dir)
    torch.manual_seed(0)
    G = networks.PerturbGenerator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3,
                                  mapping_kwargs=dict(num_layers=1),
                                  synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256))
    for kimg in kimgs:
        checkpoint.save_snapshot(os.path.join(run_dir, f'network-snapshot-{kimg:06d}.pt'),
                                 {'G': G, 'D': None, 'G_ema': G, 'augment_pipe': None},
                                 training_set_kwargs={'data': 'synthetic', 'resolution': resolution})
        for prefix in demo_model.GRID_PREFIXES:  # 16x16 samples of 8 px
            PIL.Image.new('RGB', (128, 128)).save(os.path.join(run_dir, f'{prefix}{kimg:06d}.png'))
    PIL.Image.new('RGB', (128, 128)).save(os.path.join(run_dir, 'reals.png'))
    with open(os.path.join(run_dir, 'training_options.json'), 'w') as f:
        json.dump({'training_set_kwargs': {'data': 'synthetic', 'resolution': resolution}}, f)
    with open(os.path.join(run_dir, 'stats.jsonl'), 'w') as f:
        for kimg in range(6):
            f.write(json.dumps({'Progress/kimg': {'mean': float(kimg)}}) + '\n')
    return G.eval()


def test_export_keeps_one_snapshot_in_half_precision_and_installs_as_a_run(tmp_path):
    run = str(tmp_path / '00007-run')
    G = _fake_run(run)
    dest = demo_model.export(run, 3, str(tmp_path / 'shipped'))
    assert sorted(os.listdir(dest)) == sorted(['network-snapshot-000003.pt', 'training_options.json', 'stats.jsonl',
                                               demo_model.PROVENANCE, 'reals.png'] +
                                              [f'{p}000003.png' for p in demo_model.GRID_PREFIXES])
    for name, side in [('reals.png', 64), ('fakes000003.png', 64), ('masks000003.png', 64), ('layers000003.png', 128)]:
        assert PIL.Image.open(os.path.join(dest, name)).size == (side, side), name
    kimgs = [json.loads(line)['Progress/kimg']['mean'] for line in open(os.path.join(dest, 'stats.jsonl'))]
    assert kimgs == [0, 1, 2, 3]
    info = demo_model.shipped_info(dest)
    assert info['kimg'] == 3 and info['resolution'] == 8 and info['source_run'] == '00007-run'

    raw = torch.load(os.path.join(dest, 'network-snapshot-000003.pt'), weights_only=True)
    assert 'G' not in raw and 'D' not in raw
    assert all(v.dtype == torch.float16 for v in raw['G_ema']['state_dict'].values() if v.is_floating_point())
    shipped = checkpoint.load_snapshot(os.path.join(dest, 'network-snapshot-000003.pt'))['G_ema']
    z = torch.randn(4, 8)
    with torch.no_grad():
        ours, theirs = shipped(z, None, noise_mode='const'), G(z, None, noise_mode='const')
    assert ours.dtype == torch.float32 and (ours - theirs).abs().max() < 2e-2

    run_dir = demo_model.install(str(tmp_path / 'demo'), src=dest)
    assert os.path.basename(run_dir) == '00000-shipped-shipped-000003kimg'
    assert os.path.isfile(os.path.join(run_dir, 'network-snapshot-000003.pt'))
    assert os.path.basename(demo_model.install(str(tmp_path / 'demo'), src=dest)).startswith('00001-')


def test_export_and_missing_model_fail_with_one_line(tmp_path):
    run = str(tmp_path / 'run')
    _fake_run(run)
    with pytest.raises(UserError, match=r'no network-snapshot-000004; snapshots: \[0, 3\]'):
        demo_model.export(run, 4, str(tmp_path / 'shipped'))
    assert not os.path.exists(tmp_path / 'shipped')
    with pytest.raises(UserError, match='shipped demo model is missing'):
        demo_model.shipped_info(str(tmp_path / 'nowhere'))


def test_shipped_model_draws_object_masks():
    """The checked-in model: loads weights-only, and its masks are neither empty nor full, mostly binary, and cover
    the centre of the image more than its border (the synthetic objects sit near the centre)."""
    info = demo_model.shipped_info()
    snap = checkpoint.load_snapshot(os.path.join(demo_model.SHIPPED_DIR, info['snapshot']))
    G = snap['G_ema']
    assert G.img_resolution == info['resolution'] and snap['training_set_kwargs']['data'] == 'synthetic'
    with torch.no_grad():
        mask = G(torch.randn([64, G.z_dim], generator=torch.Generator().manual_seed(1)), None, noise_mode='const',
                 return_layers=True)['mask']
    area = mask.mean(dim=[1, 2, 3])
    assert 0.1 < area.mean() < 0.6 and (area > 0.05).float().mean() > 0.9
    assert ((mask < 0.1) | (mask > 0.9)).float().mean() > 0.7
    r = G.img_resolution
    centre = mask[:, :, r // 4:3 * r // 4, r // 4:3 * r // 4].mean()
    border = torch.cat([mask[:, :, :r // 8].flatten(), mask[:, :, -(r // 8):].flatten()]).mean()
    assert centre > 2 * border


def test_demo_pipeline_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'demo.py'), f'--outdir={tmp_path}', '--kimg=1',
                           '--resolution=16', '--samples=40', '--seg-iters=4', '--mine-iters=4'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained, shipped = (os.path.join(tmp_path, d) for d in sorted(os.listdir(tmp_path)))
    assert os.path.isfile(os.path.join(trained, 'report.html')) and not os.path.isdir(os.path.join(trained, 'auto_test'))
    summary = json.load(open(os.path.join(shipped, 'auto_test', 'summary.json')))
    seg = summary['segmentation']['results']
    for key in ('pACC', 'IoU', 'mIoU', 'DRC_IoU', 'DRC_DICE'):
        assert 0 <= seg[key] <= 1, key
    info = demo_model.shipped_info()
    settings = summary['segmentation']['settings']
    assert settings['score_size'] == info['resolution'] and settings['unet_width'] == 16 and summary['kimg'] == info['kimg']
    assert set(summary['mi']['results']) == {'separate', 'single'}
    html = open(os.path.join(shipped, 'report.html'), encoding='utf-8').read()
    assert f'masks{info["kimg"]:06d}.png' in html and f'layers{info["kimg"]:06d}.png' in html and 'IoU' in html
    assert 'training_curves.png' in html
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith('Demo done. ') and 'shipped' in last and 'IoU' in last and 'MI1' in last


def test_choose_on_scores_every_snapshot_on_the_val_split_and_refuses_the_test_split(tmp_path):
    run = str(tmp_path / 'run')
    _fake_run(run, kimgs=(0, 3), resolution=16)  # The U-Net halves four times.
    scores = demo_model.score_snapshots(run, 'synthetic:val', min_kimg=0, n=24, iters=2, width=4)
    assert sorted(scores) == [0, 3] and all(0 <= s['IoU'] <= 1 and s['unet_width'] == 4 for s in scores.values())
    choice = json.load(open(os.path.join(run, 'demo-choice.json')))
    assert choice['data'] == 'synthetic:val' and sorted(choice['scores']) == ['0', '3']
    for args in (['--choose-on', 'synthetic'], ['--choose-on', 'synthetic:test'], [], ['--kimg', '3', '--choose-on',
                                                                                       'synthetic:val']):
        proc = subprocess.run([sys.executable, '-m', 'pipeline.demo_model', run, *args, '--dest', str(tmp_path / 'd')],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr and not os.path.exists(tmp_path / 'd'), args
