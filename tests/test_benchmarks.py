"""The benchmarks' baseline computes what ours computes, and the benchmark scripts run (no timing is asserted)."""
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
