"""The benchmarks' baseline computes what ours computes, and the benchmark scripts run (no timing is asserted)."""
import json
import os
import subprocess
import sys

import torch

from benchmarks.original_path import original_formulation
from training import networks
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_train_step_benchmark_runs():
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.bench_train_step', '--res', '16', '--channel-base', '256',
                           '--channel-max', '32', '--map', '2', '--batch', '4', '--iters', '1', '--warmup', '0',
                           '--impl', 'both'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'ops=original' in proc.stdout and 'ops=ours' in proc.stdout and 'speed-up ours vs original' in proc.stdout


def test_generate_benchmark_runs():
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.bench_generate', '--res', '16', '--channel-base', '256',
                           '--channel-max', '32', '--map', '2', '--batch', '4', '--iters', '1', '--warmup', '0',
                           '--impl', 'both'], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'generate device=' in proc.stdout and 'speed-up ours vs original' in proc.stdout


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
