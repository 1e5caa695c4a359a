"""Sample generation, snapshot choice, the auto-test chain and the HTML report, on a tiny real generator."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import make_report
from dnnlib.util import UserError
from metrics import report, samples
from pipeline import auto_test
from training import checkpoint, networks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIMGS = (0, 200, 400, 600)
FIDS = {0: 300.0, 200: 150.0, 400: 120.0, 600: 120.0}  # 400 and 600 tie: the first line wins.
SIGMAS = {0: 0.0, 200: 0.1, 400: 0.2, 600: 0.2}


def tiny_generator(seed):
    torch.manual_seed(seed)
    return networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=16, img_channels=3,
                                     mapping_kwargs=dict(num_layers=1),
                                     synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0,
                                                           conv_clamp=256))


def make_run(run_dir, kimgs=KIMGS, with_metric=True):
    os.makedirs(run_dir, exist_ok=True)
    for k in kimgs:
        G = tiny_generator(k)
        checkpoint.save_snapshot(os.path.join(run_dir, f'network-snapshot-{k:06d}.pt'),
                                 {'G': G, 'D': None, 'G_ema': G, 'augment_pipe': None},
                                 training_set_kwargs=dict(data='synthetic', resolution=16), extra={'kimg': k})
    if with_metric:
        with open(os.path.join(run_dir, 'metric-fid10k_full.jsonl'), 'w', encoding='utf-8') as f:
            for k in kimgs:
                f.write(json.dumps(dict(results=dict(fid10k_full=FIDS[k]), metric='fid10k_full',
                                        snapshot_pkl=f'network-snapshot-{k:06d}.pt', timestamp=0.0,
                                        sigma=SIGMAS[k])) + '\n')
    return str(run_dir)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp('run') / '00000-tiny')


def read_png(path):
    with Image.open(path) as img:
        assert img.mode == 'RGB'
        return np.asarray(img)


def read_layers(outdir, n):
    return {layer: np.stack([read_png(samples.png_path(outdir, layer, i)) for i in range(n)])
            for layer in samples.LAYERS}

# --------------------------------------------------------------------------------------------------------------------
# Snapshot choice.


def snap(run_dir, k):
    return os.path.join(run_dir, f'network-snapshot-{k:06d}.pt')


def test_find_snapshot_selection(run_dir):
    assert samples.find_snapshot(run_dir) == (snap(run_dir, 400), 400)  # argmin, ties -> first
    assert samples.find_snapshot(run_dir, topk=399) == (snap(run_dir, 200), 200)  # kimg ceiling
    assert samples.find_snapshot(run_dir, topk=0) == (snap(run_dir, 0), 0)  # kimg 0 counts
    assert samples.find_snapshot(run_dir, pkl_idx=600) == (snap(run_dir, 600), 600)
    assert samples.find_snapshot(run_dir, sigma=0.1) == (snap(run_dir, 200), 200)
    with pytest.raises(UserError, match='scored kimg: 0, 200, 400, 600'):
        samples.find_snapshot(run_dir, pkl_idx=20)  # Exact: the original's substring match picked 000200.


def test_find_snapshot_file(run_dir, tmp_path):
    assert samples.find_snapshot(snap(run_dir, 200)) == (snap(run_dir, 200), 200)
    odd = str(tmp_path / 'best.pt')
    shutil.copy(snap(run_dir, 600), odd)
    assert samples.find_snapshot(odd) == (odd, 600)  # From the snapshot's extra.
    assert samples.samples_dir_name(odd, None) == 'synthetic_data-best'


def test_find_snapshot_errors(run_dir, tmp_path):
    with pytest.raises(UserError, match='only one'):
        samples.find_snapshot(run_dir, topk=400, pkl_idx=200)
    with pytest.raises(UserError, match='does not exist'):
        samples.find_snapshot(str(tmp_path / 'nowhere'))
    with pytest.raises(UserError, match='run directory instead'):
        samples.find_snapshot(snap(run_dir, 0), topk=5)
    with pytest.raises(UserError, match='train with --metrics'):
        samples.find_snapshot(str(tmp_path))
    bare = str(tmp_path / 'bare')
    os.makedirs(bare)
    shutil.copy(snap(run_dir, 0), bare)
    with pytest.raises(UserError, match='calc_metrics.py'):
        samples.find_snapshot(bare)
    jsonl = os.path.join(run_dir, 'metric-fid10k_full.jsonl')
    shutil.copy(jsonl, os.path.join(bare, 'metric-kid10k_full.jsonl'))  # Holds results.fid10k_full only.
    with pytest.raises(UserError, match='choose another --metric'):
        samples.find_snapshot(bare, metric='kid10k_full')
    os.remove(os.path.join(bare, 'metric-kid10k_full.jsonl'))
    shutil.copy(jsonl, bare)  # Lists snapshots bare/ lacks.
    with pytest.raises(UserError, match='is missing'):
        samples.find_snapshot(bare)

# --------------------------------------------------------------------------------------------------------------------
# Generation.


def test_quantization_formula():
    x = torch.tensor([-2.0, -1.0, -0.999, -0.5, 0.0, 0.5, 0.996, 1.0, 2.0]).reshape(1, 1, 1, -1)
    expected = np.floor(np.clip(127.5 * x.numpy().astype(np.float64) + 128, 0, 255))
    assert samples.quantize(x).numpy().ravel().tolist() == expected.ravel().tolist()
    assert samples.quantize(x).ravel().tolist() == [0, 0, 0, 64, 128, 191, 254, 255, 255]
    alpha = torch.tensor([0.0, 1 / 255, 0.49, np.nextafter(0.5, 0, dtype=np.float32), 0.5, 0.51, 1.0])
    m = samples.quantize_mask(alpha.reshape(1, 1, 1, -1))
    assert m.shape == (1, 1, 7, 3) and m[..., 0].equal(m[..., 2])
    assert m[0, 0, :, 0].tolist() == [0, 1, 125, 127, 128, 130, 255]  # round(255 alpha)
    dense = torch.linspace(0, 1, 100001).reshape(1, 1, 1, -1)
    assert ((samples.quantize_mask(dense)[..., 0] >= 128) == (dense[:, 0] >= 0.5)).all()


def test_generate_samples_files_and_masks(run_dir, tmp_path):
    out = str(tmp_path / 'syn')
    samples.generate_samples(snap(run_dir, 200), out, 10, seed=3, batch=4, device='cpu')
    for layer in samples.LAYERS:
        assert sorted(os.listdir(os.path.join(out, layer))) == [f'{i:06d}.png' for i in range(1, 11)]
    with open(os.path.join(out, 'input.pkl'), 'rb') as f:
        meta = pickle.load(f)
    assert meta['z'].dtype == np.float32 and meta['z'].shape == (10, 512)
    assert np.array_equal(meta['z'], torch.randn([10, 512], generator=torch.Generator().manual_seed(3)).numpy())
    assert (meta['c'], meta['truncation_psi'], meta['noise_mode'], meta['seed']) == (None, 1.0, 'const', 3)
    with open(os.path.join(out, 'network-snapshot.pt'), 'rb') as a, open(snap(run_dir, 200), 'rb') as b:
        assert a.read() == b.read()

    layers = read_layers(out, 10)
    assert layers['img'].shape == (10, 16, 16, 3) and layers['img'].dtype == np.uint8
    G = checkpoint.load_snapshot(snap(run_dir, 200))['G_ema']
    with torch.no_grad():
        ref = [G(torch.from_numpy(meta['z'][b:b + 4]), None, noise_mode='const', return_layers=True)
               for b in range(0, 10, 4)]
    alpha = torch.cat([r['mask'] for r in ref])
    assert np.array_equal(layers['mask'], samples.quantize_mask(alpha).numpy())
    assert np.array_equal(layers['mask'][..., 0] >= 128, alpha[:, 0].numpy() >= 0.5)
    assert np.array_equal(layers['fg*mask'], samples.quantize(torch.cat([r['fg*mask'] for r in ref])).numpy())


def test_generation_is_batch_size_independent(run_dir, tmp_path):
    a = samples.generate_samples(snap(run_dir, 0), str(tmp_path / 'a'), 9, batch=2, device='cpu')
    b = samples.generate_samples(snap(run_dir, 0), str(tmp_path / 'b'), 9, batch=9, device='cpu')
    la, lb = read_layers(a, 9), read_layers(b, 9)
    for layer in samples.LAYERS:  # Different batch shapes may round one float differently: allow one level.
        assert np.abs(la[layer].astype(int) - lb[layer].astype(int)).max() <= 1, layer


def test_resume_keeps_everything_else(run_dir, tmp_path, capsys):
    out = str(tmp_path / 'syn')
    samples.generate_samples(snap(run_dir, 0), out, 8, batch=3, device='cpu')
    before = read_layers(out, 8)
    os.makedirs(os.path.join(out, '00000-DRCreal-cub-color_aug-64'))
    keep = [os.path.join(out, '00000-DRCreal-cub-color_aug-64', 'results.json'), os.path.join(out, 'notes.txt')]
    for path in keep:
        with open(path, 'w') as f:
            f.write('{}')
    os.remove(samples.png_path(out, 'img', 5))
    os.remove(samples.png_path(out, 'fg*mask', 2))
    os.remove(os.path.join(out, 'input.pkl'))
    with open(os.path.join(out, 'mask', '.tmp-abc000004.png'), 'wb') as f:
        f.write(b'\x89PNG half')  # A killed write.
    assert not samples.is_complete(out, 8)
    samples.generate_samples(snap(run_dir, 0), out, 8, batch=3, device='cpu')
    assert samples.is_complete(out, 8)
    assert all(os.path.isfile(p) for p in keep)
    assert not any(name.startswith('.tmp-') for name in os.listdir(os.path.join(out, 'mask')))
    after = read_layers(out, 8)
    assert all(np.array_equal(before[k], after[k]) for k in samples.LAYERS)
    assert 'Generated 6 samples' in capsys.readouterr().out  # From the first missing one, fg*mask/000003.
    samples.generate_samples(snap(run_dir, 0), out, 8, batch=3, device='cpu')
    assert 'Reusing 8 complete samples' in capsys.readouterr().out
    with pytest.raises(UserError, match='seed=0'):
        samples.generate_samples(snap(run_dir, 0), out, 8, seed=1, device='cpu')
    with pytest.raises(UserError, match='another snapshot'):
        samples.generate_samples(snap(run_dir, 200), out, 8, device='cpu')
    with pytest.raises(UserError, match='noise mode'):
        samples.generate_samples(snap(run_dir, 0), str(tmp_path / 'x'), 8, noise_mode='off')


def run_script(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, ILSGAN_NO_CUDA_OPS='1'))


def test_cli_end_to_end(tmp_path):
    run = make_run(tmp_path / 'run', kimgs=(0, 200))
    proc = run_script('generate_segmentation_samples.py', f'--network={run}', '--n=5', '--batch=2',
                      '--device=cpu')
    assert proc.returncode == 0, proc.stderr
    out = os.path.join(run, 'synthetic_data-000200')  # The lower FID, beside the snapshot.
    assert f'Samples: {out}' in proc.stdout and samples.is_complete(out, 5)
    proc = run_script('generate_segmentation_samples.py', f'--network={run}', '--pkl_idx=0', '--topk=200')
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr.count('\n') == 1 and proc.stderr.startswith('error: ') and '--topk' in proc.stderr

# --------------------------------------------------------------------------------------------------------------------
# Report and the auto-test.


def test_report_on_partial_run(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    assert CliRunner().invoke(make_report.main, [f'--run={tmp_path / "nowhere"}']).exit_code == 2
    path = report.write_report(str(run))  # Nothing at all yet.
    assert 'No stats.jsonl' in open(path, encoding='utf-8').read()

    with open(run / 'stats.jsonl', 'w') as f:
        for t in range(1, 4):
            tick = {'Progress/kimg': dict(num=1, mean=4.0 * t, std=0), 'Loss/G/loss': dict(num=8, mean=1 / t, std=0),
                    'Progress/augment': dict(num=1, mean=0.01 * t, std=0), 'timestamp': 0}
            f.write(json.dumps(tick) + '\n')
        f.write('{"Progress/kimg": {"num"')  # The tick being written by a live run.
    Image.new('RGB', (32, 32)).save(run / 'fakes000004.png')
    Image.new('RGB', (32, 32)).save(run / 'fakes_init.png')
    result = CliRunner().invoke(make_report.main, [f'--run={run}'])
    assert result.exit_code == 0, result.output
    text = open(run / 'report.html', encoding='utf-8').read()
    assert 'src="report/training_curves.png"' in text and os.path.isfile(run / 'report' / 'training_curves.png')
    assert 'src="fakes000004.png"' in text and 'fakes_init.png' not in text  # The newest grid only.
    assert 'Not in stats.jsonl: Discriminator scores' in text and 'No metric-*.jsonl' in text
    assert '<script' not in text and 'http' not in text


def make_real_folder(path, count=6, size=16):
    rng = np.random.default_rng(0)
    os.makedirs(path / 'images')
    os.makedirs(path / 'masks')
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[4:12, 3 + i % 4:11 + i % 4] = 255
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path / 'images' / f'{i}.png')
        Image.fromarray(mask).save(path / 'masks' / f'{i}.png')
    return str(path)


def test_auto_test_end_to_end(tmp_path):
    run = make_run(tmp_path / 'run', kimgs=(0, 200))
    real = make_real_folder(tmp_path / 'real')
    kwargs = dict(n=40, seg_iters=4, mine_iters=4, scale=16, device='cpu')
    summary = auto_test.run_auto_test(run, real, **kwargs)
    auto = os.path.join(run, 'auto_test')
    syn = os.path.join(auto, 'synthetic_data-000200')
    assert summary['kimg'] == 200 and summary['metric_value'] == FIDS[200]
    assert summary['samples']['dir'] == os.path.relpath(syn, run) and samples.is_complete(syn, 40)
    seg = summary['segmentation']['results']
    assert all(0 <= seg[k] <= 1 for k in ('DRC_IoU', 'DRC_DICE', 'IoU', 'mIoU', 'pACC'))
    assert os.path.isfile(os.path.join(syn, '00000-DRCreal-real-color_aug-16', 'results.json'))
    assert set(summary['mi']['results']) == {'separate', 'single'}
    with open(os.path.join(auto, 'best_fid_data_seg_results.json')) as f:
        assert json.load(f) == {'000200': seg}
    with open(os.path.join(auto, 'summary.json')) as f:
        assert json.load(f) == summary
    text = open(os.path.join(run, 'report.html'), encoding='utf-8').read()
    assert '00000-DRCreal-real-color_aug-16/seg-test.png' in text and 'separate MI1' in text
    log = open(os.path.join(auto, 'log.txt'), encoding='utf-8').read()
    assert all(f'auto-test | {name}' in log for name in ('snapshot', 'samples', 'segmentation', 'mine', 'done'))
    assert 'MINE separate' not in log  # The MINE runs log into their own files: loggers do not chain.

    t0 = time.time()
    again = auto_test.run_auto_test(run, real, **kwargs)
    assert time.time() - t0 < 15
    assert all(t['reused'] for t in again['timing'].values() if t is not again['timing']['snapshot'])
    assert again['timing']['segmentation']['seconds'] == summary['timing']['segmentation']['seconds']
    assert again['segmentation'] == summary['segmentation'] and again['mi'] == summary['mi']


def test_auto_test_falls_back_to_last_snapshot(tmp_path, capsys):
    run = make_run(tmp_path / 'run', kimgs=(0, 200), with_metric=False)
    snapshot, kimg, value, how = auto_test.choose_snapshot(run, 'fid10k_full')
    assert (snapshot, kimg, value, how) == (snap(run, 200), 200, None, 'last snapshot')
    assert 'LAST snapshot (kimg 200)' in capsys.readouterr().out
    with pytest.raises(UserError, match='unknown real data'):
        auto_test.run_auto_test(run, 'mnist')
    with pytest.raises(UserError, match='no network-snapshot'):
        auto_test.choose_snapshot(str(tmp_path), None)


def test_the_auto_test_reshapes_as_the_runs_preset_says(tmp_path):
    def run_of(cfg):
        run = tmp_path / (cfg or 'none')
        run.mkdir()
        if cfg:
            (run / 'training_options.json').write_text(json.dumps(dict(cli_options=dict(cfg=cfg))))
        return str(run)
    assert auto_test.preset_reshape(run_of('tiny')) == 0.15
    assert auto_test.preset_reshape(run_of('ILS_predL')) == 0.0
    assert auto_test.preset_reshape(run_of(None)) == 0.0  # A converted original pickle has no options file.
    assert auto_test.preset_seg(run_of('ILS'), 'seg_self_train') == 0


@pytest.mark.slow
def test_the_auto_test_self_trains_on_the_runs_training_images(tmp_path, monkeypatch):
    monkeypatch.setenv('ILSGAN_CACHE_DIR', str(tmp_path / 'cache'))
    run = make_run(tmp_path / 'run', kimgs=(200,), with_metric=False)
    real = make_real_folder(tmp_path / 'real')
    kwargs = dict(n=40, seg_iters=4, mine_iters=4, scale=16, device='cpu', metric=None)
    with pytest.raises(UserError, match='does not say what the run was trained on'):
        auto_test.run_auto_test(run, real, self_train_rounds=1, **kwargs)
    with open(os.path.join(run, 'training_options.json'), 'w') as f:
        json.dump(dict(training_set_kwargs=dict(data=os.path.join(real, 'images'), data_root=None)), f)
    summary = auto_test.run_auto_test(run, real, self_train_rounds=1, **kwargs)
    seg = summary['segmentation']
    assert seg['dir'].endswith('00000-DRCreal-real-color_aug-16-self1')
    assert seg['results']['self_train_rounds'] == 1 and seg['results']['best_iter'] == 6
    assert seg['settings']['self_train'] == os.path.join(real, 'images')
    text = open(os.path.join(run, 'report.html'), encoding='utf-8').read()
    assert '<th>self-train</th>' in text
