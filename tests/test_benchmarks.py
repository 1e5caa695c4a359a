"""The benchmarks' baseline computes what ours computes, and the benchmark scripts run (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks.original_path import OriginalLoss, original_formulation
from training import networks
from training.loss import ILSLoss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ['--res', '16', '--channel-base', '256', '--channel-max', '32', '--map', '2', '--batch', '4', '--iters', '1',
       '--warmup', '0', '--impl', 'both', '--threads', '1']


def _nets():
    torch.manual_seed(0)
    common = dict(channel_base=256, channel_max=32, num_fp16_res=0, conv_clamp=None)
    G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=16, img_channels=3,
                                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=common)
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=16, img_channels=3, **common)
    return G.train(), D.train()


def _forward_backward(G, D, z):
    G.zero_grad(set_to_none=True)
    layers, shifted, _ = G.generate_layer(z, None, torch.zeros(z.shape[0], G.eps_dim), noise_mode='const')
    logits = D(shifted['img'], None)
    logits.sum().backward()
    return logits.detach(), [p.grad.clone() for p in G.parameters() if p.grad is not None]


def test_original_formulation_gives_the_same_values_and_gradients():
    G, D = _nets()
    G.requires_grad_(True)
    z = torch.randn(4, 512)
    ours, grads = _forward_backward(G, D, z)
    with original_formulation():
        original, original_grads = _forward_backward(G, D, z)
    assert torch.allclose(ours, original, rtol=1e-4, atol=1e-5)
    assert len(grads) == len(original_grads)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(grads, original_grads))
    assert networks.modulated_conv2d.__module__ == 'training.networks'  # Restored on exit.


@pytest.fixture
def fixed_randomness(monkeypatch):
    """The same noise inputs and negative-sample permutation on both sides, whatever the order of the draws
    (the original's style-mixing pass draws a latent that ours does not)."""
    randn = torch.randn

    def shape_seeded(*size, device=None, dtype=None, **_):
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        gen = torch.Generator().manual_seed(hash(size) % 2 ** 31)
        return randn(size, generator=gen, dtype=dtype).to(device or 'cpu')
    monkeypatch.setattr(torch, 'randn', shape_seeded)
    monkeypatch.setattr(torch, 'randn_like', lambda x, **_: shape_seeded(x.shape, dtype=x.dtype, device=x.device))
    monkeypatch.setattr(torch, 'randperm', lambda n, **_: torch.roll(torch.arange(n), 1))


@pytest.mark.parametrize('phase, kimg, gain', [('Gmain', 0, 1), ('Gmain', 500, 1), ('Dmain', 0, 1), ('Dreg', 0, 16)])
def test_original_loss_gives_the_same_gradients(fixed_randomness, phase, kimg, gain):
    G, D = _nets()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # Off the initial weights, so that the masks and the ILS term are not trivial.
        for p in list(G.parameters()) + list(D.parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    z, eps = torch.randn(8, 512, generator=g), torch.rand(8, G.eps_dim, generator=g) * 2 - 1
    real = (torch.randn(8, 3, 16, 16, generator=g) * 0.6).clamp(-1, 1)
    module = G if phase == 'Gmain' else D
    G_state = {k: v.clone() for k, v in G.state_dict().items()}  # The mapping networks' w_avg moves in every phase.

    def gradients(loss, context):
        module.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        with context:
            loss.accumulate_gradients(phase, real, z, eps, gain, cur_kimg=kimg)
        module.requires_grad_(False)
        return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    ours = gradients(ILSLoss('cpu', G, D, r1_gamma=0.05), torch.enable_grad())
    w_avg = G.mapping_bg.w_avg.clone()
    G.load_state_dict(G_state)
    original = gradients(OriginalLoss(G, D, r1_gamma=0.05), original_formulation())
    assert ours.keys() == original.keys() and ours
    for name, grad in ours.items():
        scale = grad.abs().max().clamp(min=1e-8)
        assert ((grad - original[name]).abs().max() / scale) < 2e-3, name
    assert torch.allclose(G.mapping_bg.w_avg, w_avg)  # The mixing pass leaves w_avg alone, as ours does.


def _run(module, *args):
    proc = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_step_benchmark_runs():
    out = _run('benchmarks.bench_train_step', *TOY)
    assert 'ops=original' in out and 'ops=ours' in out and 'speed-up ours vs original' in out
    assert 'Greg' in out.split('ops=original')[1].split('\n')[0] and 'Dreg' in out


def test_generate_benchmark_reports_json():
    result = json.loads(_run('benchmarks.bench_generate', *TOY, '--json').strip().splitlines()[-1])
    assert result['bench'] == 'generate' and set(result['results']) == {'original', 'ours'}
    assert result['speedup'] > 0 and result['results']['ours']['img_s'] > 0


def test_ils_ablation_report_gives_mean_spread_and_range_per_setting(tmp_path):
    from benchmarks import ils_ablation
    path = tmp_path / 'results.jsonl'
    records = [dict(job=f'collage-ils-s{s}', data='collage', setting='ils', seed=s, kimg=1,
                    segmentation=dict(IoU=iou, DRC_IoU=iou, DRC_DICE=iou), masks=dict(inverted=0.0, shape_iou=0.7),
                    flipped=False) for s, iou in enumerate([0.5, 0.7, 0.9])]
    records.append(dict(job='collage-noils-s0', data='collage', setting='noils', seed=0, kimg=1,
                        segmentation=dict(IoU=0.4), masks={}, flipped=True))
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    rows = ils_ablation.report(str(path)).splitlines()
    ils = next(r for r in rows if '| ils |' in r)
    assert '| 0,1,2 |' in ils and '0.700 ± 0.200 [0.500, 0.900]' in ils
    noils = next(r for r in rows if '| noils |' in r)
    assert '| 0.400 |' in noils and '| 1.000 |' in noils and '| - |' in noils  # flipped counts as 1; missing is '-'


def test_ils_ablation_rejects_bad_options_in_one_line(tmp_path):
    for args in (['--report'], ['--settings=ils,bogus'], ['--shard=3/2'], ['--seeds=a,b']):
        result = subprocess.run([sys.executable, '-m', 'benchmarks.ils_ablation', f'--outdir={tmp_path}', *args],
                                cwd=ROOT, capture_output=True, text=True)
        assert result.returncode != 0 and 'Traceback' not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_seg_ceiling_writes_the_true_pairs_and_scores_them(tmp_path):
    import numpy as np
    import datasets
    from benchmarks import seg_ceiling
    from metrics import seg_eval
    pairs = seg_ceiling.write_real_pairs('collage', 12, 16, str(tmp_path / 'pairs'))
    images, masks = datasets.make_builtin('collage', 12, 16, 'train')
    loaded_images, loaded_masks = seg_eval.load_pairs(seg_eval.list_pairs(pairs), 16, 16)
    assert np.array_equal(loaded_images.numpy(), images) and np.array_equal(loaded_masks.numpy(), masks.astype(bool))
    result = subprocess.run([sys.executable, '-m', 'benchmarks.seg_ceiling', f'--outdir={tmp_path}', '--data=collage',
                             '--n=12', '--resolution=16', '--seg-iters=2', '--unet-width=4'],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '| collage | 12 | 4 | 2 |' in result.stdout
    record = json.loads(next(line for line in result.stdout.splitlines() if line.startswith('{"pACC"')))
    assert record['data'] == 'collage' and 0 <= record['IoU'] <= 1


def test_seg_ceiling_rejects_unknown_data_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'benchmarks.seg_ceiling', f'--outdir={tmp_path}', '--data=cub'],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1, result.stderr
