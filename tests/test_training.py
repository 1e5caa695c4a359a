"""ILS losses by hand, one tick of every preset, kill-and-resume, multi-process DDP, and the CLI's input checks."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from pipeline import train_cli
from training import loss as loss_lib
from training import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny preset shrunk further: 16 px and batch 8 keep each CLI run to seconds on a 2-core CPU.
FAST = ['--cfg=tiny', '--data=synthetic', '--resolution=16', '--batch=8', '--metrics=none', '--no-auto-test', '--seed=1']


def run_cli(args, script='train_ILS_64.py', env=None, **kwargs):
    env = dict(env or os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, os.path.join(ROOT, script)] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# The ILS term and the mask priors, by hand.

def _layers(n=4, res=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'fg': torch.rand(n, 3, res, res, generator=g) * 2.4 - 1.2, 'bg': torch.rand(n, 3, res, res, generator=g) * 2 - 1,
            'mask': torch.rand(n, 1, res, res, generator=g)}


def test_club_laplace_matches_hand_computation():
    layers = _layers()
    perm = torch.tensor([2, 0, 3, 1])
    f, b, m = layers['fg'], layers['bg'], layers['mask']
    expected = 0.0
    for x, y in [(b * m, f * m), (f * (1 - m), b * (1 - m))]:
        pos = sum((x[i] - y[i]).abs().mean() for i in range(4)) / 4
        neg = sum((x[perm[i]] - y[i]).abs().mean() for i in range(4)) / 4
        expected += -pos + neg
    got = sum(loss_lib.club_bound(x, y, 'predetermined_laplace', perm=perm) for x, y in loss_lib.region_pairs(layers))
    assert torch.allclose(got, expected, atol=1e-6)
    # With the gaussian: half the squared distance.
    x, y = loss_lib.region_pairs(layers)[0]
    g = loss_lib.club_bound(x, y, 'predetermined_gaussian', perm=perm)
    assert torch.allclose(g, -(0.5 * (x - y) ** 2).mean() + (0.5 * (x[perm] - y) ** 2).mean(), atol=1e-6)


def test_ils_gradient_gating_and_mask_gradient():
    layers = {k: v.requires_grad_(True) for k, v in _layers().items()}
    torch.manual_seed(0)
    total = sum(loss_lib.club_bound(x, y, 'predetermined_laplace') for x, y in loss_lib.region_pairs(layers))
    total.backward()
    outside = (layers['fg'].detach().abs() >= 1)
    assert outside.any() and (layers['fg'].grad[outside] == 0).all()
    assert layers['mask'].grad.abs().sum() > 0  # opt_mask: the mask is optimised through the ILS term too.


def test_sigma_schedule_and_r1_heuristic():
    assert loss_lib.ils_sigma(400, 1.0, 0.2, 400) == 0.2 and loss_lib.ils_sigma(401, 1.0, 0.2, 400) == 1.0
    assert abs(loss_lib.r1_gamma_heuristic(64, 32) - 0.0256) < 1e-12
    assert abs(loss_lib.r1_gamma_heuristic(128, 32) - 0.1024) < 1e-12


def test_mask_losses_by_hand():
    loss = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None)
    mask = torch.tensor([0.1, 0.6, 0.9, 0.2]).reshape(1, 1, 2, 2)
    loss_bin, loss_msize = loss.mask_losses(mask)
    assert torch.allclose(loss_bin, torch.tensor([(0.1 + 0.4 + 0.1 + 0.2) / 4]))
    assert torch.allclose(loss_msize, torch.tensor([0.0]))  # mean 0.45 >= 0.25
    _, small = loss.mask_losses(mask * 0.2)
    assert torch.allclose(small, torch.tensor([0.25 - 0.09]))
    bounded = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None, max_msize=0.4)
    assert torch.allclose(bounded.mask_losses(mask)[1], torch.tensor([0.45 - 0.4]))
    unperturbed = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None, do_perturb=False)
    assert torch.allclose(unperturbed.mask_losses(torch.full([1, 1, 2, 2], 0.9))[1], torch.tensor([0.9 - 0.75]))


def test_tiny_preset_bounds_the_mask_area_and_originals_do_not():
    def loss_kwargs(cfg):
        return train_cli.build_options(_opts(cfg=cfg), 64, presets.SCRIPT_PRESETS[64][0])[1]['loss_kwargs']
    assert loss_kwargs('tiny')['max_msize'] == 0.6 and loss_kwargs('tiny')['msize_weight'] == 10.0
    assert loss_kwargs('ILS_predL')['max_msize'] is None and loss_kwargs('ILS_predL')['msize_weight'] == 2.0
    assert loss_kwargs('tiny')['border_weight'] == 2.0
    kwargs = {cfg: train_cli.build_options(_opts(cfg=cfg), 64, presets.SCRIPT_PRESETS[64][0])[1]
              for cfg in presets.SCRIPT_PRESETS[64][0]}
    assert kwargs['tiny']['G_opt_kwargs']['lr'] == 0.00125 and kwargs['tiny']['D_opt_kwargs']['lr'] == 0.0025
    assert all(kw['G_opt_kwargs']['lr'] == kw['D_opt_kwargs']['lr'] == 0.0025 for cfg, kw in kwargs.items()
               if cfg != 'tiny')
    assert all(loss_kwargs(cfg)['diversity_weight'] == 0.0 for cfg in presets.SCRIPT_PRESETS[64][0])
    assert all(loss_kwargs(cfg)['border_weight'] == 0.0 for cfg in presets.SCRIPT_PRESETS[64][0] if cfg != 'tiny')
    opts = _opts(cfg='tiny', border_weight=0.5)
    assert train_cli.build_options(opts, 64, presets.SCRIPT_PRESETS[64][0])[1]['loss_kwargs']['border_weight'] == 0.5


def test_border_prior_by_hand():
    frame = torch.ones(2, 1, 16, 16)
    frame[:, :, 2:-2, 2:-2] = 0  # The outer ring of a 16 px mask is 2 px wide.
    blob = 1 - frame
    off = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None)
    on = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None, border_weight=2.0)
    assert torch.equal(off.border_loss(frame), torch.zeros(2))  # The original has no border prior.
    assert torch.equal(on.border_loss(frame), torch.ones(2)) and torch.equal(on.border_loss(blob), torch.zeros(2))
    half = torch.zeros(1, 1, 16, 16)
    half[..., :8] = 1  # The left half covers half of the ring.
    assert torch.allclose(on.border_loss(half), torch.tensor([0.5]))


def test_shape_diversity_measures_shape_not_place():
    on = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None, diversity_weight=1.0)
    squares = torch.zeros(2, 1, 16, 16)
    squares[0, :, 2:8, 3:9] = 1
    squares[1, :, 9:15, 8:14] = 1  # The same square elsewhere.
    assert on.shape_diversity(squares).abs().max() < 1e-6
    shapes = squares.clone()
    shapes[1] = 0
    shapes[1, :, 7:9, 2:14] = 1  # A bar of 24 pixels against a square of 36.
    d = on.shape_diversity(shapes.requires_grad_(True))
    assert torch.all(d > 0.1)
    d.sum().backward()
    assert shapes.grad.abs().sum() > 0  # It can move the shapes.
    off = loss_lib.ILSLoss(device='cpu', G=torch.nn.Identity(), D=None)
    assert torch.equal(off.shape_diversity(shapes), torch.zeros(2))  # Off in the original.


def test_l1_estimator_only_moves_hidden_regions():
    layers = {k: v.requires_grad_(True) for k, v in _layers().items()}
    loss_lib.l1_distance_bound(layers).backward()
    assert layers['mask'].grad is None  # The mask is detached in this estimator.


# ---------------------------------------------------------------------------------------------------------------
# The options every preset turns into.

def _opts(**kw):
    base = dict(cfg='ILS_predL', resolution=None, gpus=1, batch=None, batch_gpu=None, cond=False, aug='ada', p=None,
                augpipe='bgc', target=0.6, metrics='none', fp32=False, map=None, freezed=0, nhwc=False, gamma=None,
                no_ils=False, seed=0, kimg=None, tick=None, snap=50, nobench=False, allow_tf32=False, inception=None)
    base.update(kw)
    return base


def _small_D(mbstd_group_size):
    from training import networks
    torch.manual_seed(0)
    return networks.DiscriminatorOpen(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32,
                                      epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size)).train()


@pytest.mark.parametrize('group,n', [(4, 8), (2, 6), (4, 2), (None, 4)])
def test_one_d_pass_for_fakes_and_reals_equals_two(group, n):
    D = _small_D(group)
    loss = loss_lib.ILSLoss('cpu', G=None, D=D)
    fake, real = torch.randn(n, 3, 16, 16), torch.randn(n, 3, 16, 16)
    with torch.no_grad():
        got = loss.run_D_fake_real(fake, real)
        want = D(fake, None), D(real, None)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dmain_gradients_equal_the_two_pass_formulation():
    from training import networks
    torch.manual_seed(0)
    G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=16, img_channels=3,
                                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
    D = _small_D(4).requires_grad_(True)
    loss = loss_lib.ILSLoss('cpu', G=G, D=D, r1_gamma=0.5)
    real, z, eps = torch.randn(8, 3, 16, 16), torch.randn(8, 512), torch.rand(8, 2) * 2 - 1
    loss.accumulate_gradients('Dmain', real, z, eps, gain=1, cur_kimg=0)
    loss.accumulate_gradients('Dreg', real, z, eps, gain=1, cur_kimg=0)
    got = [p.grad.clone() for p in D.parameters()]
    D.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake = G.generate_layer(z, None, eps)[1]['img']
    r = real.clone().requires_grad_(True)
    real_logits = D(r, None)
    r1, = torch.autograd.grad(real_logits.sum(), r, create_graph=True)
    total = (torch.nn.functional.softplus(D(fake, None)).mean() + torch.nn.functional.softplus(-real_logits).mean()
             + (r1.square().sum(dim=[1, 2, 3]) * 0.25).mean())
    total.backward()
    for a, p in zip(got, D.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-4, atol=1e-6)


def test_default_preset_matches_the_original():
    desc, kw, res = train_cli.build_options(_opts(), 64, presets.SCRIPT_PRESETS[64][0])
    assert res == 64 and desc == 'ILS_predL-1gpu-batch32'
    assert kw['batch_size'] == 32 and kw['total_kimg'] == 8000 and kw['kimg_per_tick'] == 4
    assert abs(kw['loss_kwargs']['r1_gamma'] - 0.0256) < 1e-12 and kw['ema_kimg'] == 10
    assert kw['G_kwargs']['synthesis_kwargs'] == dict(channel_base=16384, channel_max=256, num_fp16_res=4, conv_clamp=256)
    assert kw['G_kwargs']['mapping_kwargs'] == dict(num_layers=8) and kw['ada_target'] == 0.6
    assert kw['G_opt_kwargs'] == dict(lr=0.0025, betas=[0, 0.99], eps=1e-8)
    _, kw128, res128 = train_cli.build_options(_opts(cfg='ILS'), 128, presets.SCRIPT_PRESETS[128][0])
    assert res128 == 128 and abs(kw128['loss_kwargs']['r1_gamma'] - 0.1024) < 1e-12


@pytest.mark.parametrize('cfg', presets.SCRIPT_PRESETS[64][0])
def test_one_tick_of_every_preset(cfg, tmp_path):
    """A real training tick of each preset's loss and estimator, at a toy width so it runs on the CPU."""
    import numpy as np
    from training import training_loop

    class Images:  # A plain in-memory array: the dataset package is tested on its own.
        name, resolution = 'noise16', 16
        images = np.random.RandomState(0).randint(0, 256, size=(16, 3, 16, 16), dtype=np.uint8)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    _, kw, _ = train_cli.build_options(_opts(cfg=cfg, resolution=16, batch=4, map=1), 64, presets.SCRIPT_PRESETS[64][0])
    for k in ('G_kwargs', 'D_kwargs'):
        target = kw[k]['synthesis_kwargs'] if k == 'G_kwargs' else kw[k]
        target.update(channel_base=128, channel_max=16)
    kw.update(total_kimg=0.008, kimg_per_tick=0.004, image_snapshot_ticks=1, network_snapshot_ticks=1, grid_max_side=2)
    del kw['metrics'], kw['inception']  # The CLI turns these into the loop's snapshot_metrics hook.
    training_loop.training_loop(run_dir=str(tmp_path), training_set=Images(), training_set_kwargs={}, **kw)
    lines = [json.loads(line) for line in open(tmp_path / 'stats.jsonl')]
    assert len(lines) == 2
    for key in ('Loss/G/loss', 'Loss/G/loss_bin', 'Loss/G/mask_area', 'Loss/G/loss_msize', 'Loss/G/anti_leaking', 'Loss/scores/real', 'Loss/r1_penalty'):
        assert all(np.isfinite(line[key]['mean']) for line in lines if key in line), key
    assert all(0 <= line['Loss/G/mask_area']['mean'] <= 1 for line in lines)
    if cfg.startswith('ILS_learn'):
        assert np.isfinite(lines[-1]['Loss/Autoreg/NLL']['mean'])
    for name in ('network-snapshot-000000.pt', 'training-state.pt', 'fakes_init.png', 'masks000000.png',
                 'layers000000.png', 'grads000000.png', 'reals.png'):
        assert (tmp_path / name).is_file(), name


# ---------------------------------------------------------------------------------------------------------------
# The CLI: input checks, resume, several processes.

@pytest.mark.parametrize('args,message', [
    (['--data=/nonexistent/images'], 'nonexistent'),
    (['--cfg=nope'], 'unknown --cfg'),
    (['--resolution=48'], 'power of two'),
    (['--gpus=3'], 'multiple of --gpus'),
    (['--aug=fixed'], '--p'),
    (['--metrics=fid_bogus'], 'unknown metric'),
    (['--metrics=fid10k_full', '--inception=/nonexistent/inception.pt'], 'Inception file not found'),
])
def test_bad_input_gives_one_line_and_no_run_dir(tmp_path, args, message):
    outdir = tmp_path / 'runs'
    base = [a for a in FAST if not any(a.startswith(b.split('=')[0] + '=') for b in args)]
    proc = run_cli([f'--outdir={outdir}'] + base + args, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], proc.stderr
    assert not outdir.exists() or not os.listdir(outdir)


def test_empty_image_folder_is_refused(tmp_path):
    (tmp_path / 'empty').mkdir()
    proc = run_cli([f'--outdir={tmp_path / "runs"}'] + FAST[:1] + [f'--data={tmp_path / "empty"}'] + FAST[2:], timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / 'runs').exists() or not os.listdir(tmp_path / 'runs')


def _final_state(run_dir):
    return torch.load(os.path.join(run_dir, 'training-state.pt'), weights_only=True)


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    """Killed at the end of its 4th tick (a deterministic point: the test-only ILSGAN_FAULT hook), a run of 5
    one-iteration ticks resumed with the documented command ends with the weights of an uninterrupted one."""
    def tiny_run(outdir, fault=None):
        env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **({'ILSGAN_FAULT': fault} if fault else {}))
        return subprocess.run([sys.executable, '-m', 'benchmarks.tiny_run', '--ticks=5', '--', f'--outdir={outdir}']
                              + FAST + ['--subset=16', '--snap=2'], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)
    ref = tiny_run(tmp_path / 'ref')
    assert ref.returncode == 0, ref.stderr[-2000:]
    ref_dir = os.path.join(tmp_path / 'ref', os.listdir(tmp_path / 'ref')[0])
    killed = tiny_run(tmp_path / 'killed', fault='kill:tick@4')  # Snapshots at ticks 0 and 2: tick 3 is replayed.
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = os.path.join(tmp_path / 'killed', os.listdir(tmp_path / 'killed')[0])
    assert _final_state(run_dir)['cur_tick'] == 3

    resumed = run_cli([f'--resume={run_dir}'], timeout=900, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = _final_state(ref_dir), _final_state(run_dir)
    assert a['cur_nimg'] == b['cur_nimg'] == 40
    for net in ('G', 'D', 'G_ema'):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f'{net}.{k}'
    assert torch.equal(a['augment_pipe']['p'], b['augment_pipe']['p'])
    assert (a['cur_tick'], a['batch_idx']) == (b['cur_tick'], b['batch_idx'])
    for opt in ('G_opt', 'D_opt'):
        for idx, st in a[opt]['state'].items():
            assert torch.equal(st['exp_avg'], b[opt]['state'][idx]['exp_avg'])
            assert torch.equal(st['exp_avg_sq'], b[opt]['state'][idx]['exp_avg_sq'])

    def ticks(d):
        return [json.loads(line)['Progress/kimg']['mean'] for line in open(os.path.join(d, 'stats.jsonl'))]
    assert ticks(run_dir) == ticks(ref_dir) and len(ticks(ref_dir)) == 5  # Replayed ticks are not logged twice.


def test_torchrun_two_processes_on_cpu(tmp_path):
    # --batch-gpu=2: two accumulation rounds per rank, the first under DDP's no_sync; the ranks stay identical only
    # if the last round all-reduces what both rounds accumulated.
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           os.path.join(ROOT, 'train_ILS_64.py'), f'--outdir={tmp_path}'] + FAST +
                          ['--kimg=1', '--tick=1', '--snap=1', '--batch-gpu=2'], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'Networks identical on all 2 ranks' in log
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert (options['batch_size'], options['batch_gpu']) == (8, 2)


def test_learned_estimator_trains_through_ddp(tmp_path):
    """ILS_learnL/N under DistributedDataParallel: the bag is called through its wrapper and its weights move."""
    from training import networks
    from training.estimators import ModelBag
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        G = networks.PerturbGenerator(z_dim=512, w_dim=512, c_dim=0, img_resolution=16, img_channels=3,
                                      mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=16))
        D = _small_D(4)
        bag = ModelBag('neural_laplace', resolution=16).train()
        ddp = lambda m: torch.nn.parallel.DistributedDataParallel(m.requires_grad_(True), broadcast_buffers=False)  # noqa: E731
        D_run, bag_run = ddp(D), ddp(bag)
        D.requires_grad_(False)
        bag.requires_grad_(False)
        loss = loss_lib.ILSLoss('cpu', G=G, D=D_run, estimator_bag=bag_run, distribution='neural_laplace', ils_sigma_init=1e-3)
        z, eps, real = torch.randn(4, 512), torch.rand(4, 2) * 2 - 1, torch.randn(4, 3, 16, 16)
        before = [p.detach().clone() for p in bag.parameters()]
        G.requires_grad_(True)
        loss.accumulate_gradients('Gmain', real, z, eps, gain=1, cur_kimg=0)
        G.requires_grad_(False)
        assert all(p.grad is None for p in bag.parameters())
        D.requires_grad_(True)
        bag.requires_grad_(True)
        loss.accumulate_gradients('Dmain', real, z, eps, gain=1, cur_kimg=0)
        opt = torch.optim.Adam(bag.parameters(), lr=1e-2)
        opt.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, bag.parameters()))
    finally:
        torch.distributed.destroy_process_group()


def test_resume_from_weights_and_shape_mismatch(tmp_path, golden_dir):
    first = run_cli([f'--outdir={tmp_path / "a"}'] + FAST + ['--kimg=1', '--tick=1', '--snap=1'], timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / 'a' / os.listdir(tmp_path / 'a')[0]
    snap = run_dir / 'network-snapshot-000001.pt'
    resumed = run_cli([f'--outdir={tmp_path / "b"}'] + FAST + ['--kimg=1', '--tick=1', '--snap=1', f'--resume={snap}'], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    options = json.load(open(tmp_path / 'b' / os.listdir(tmp_path / 'b')[0] / 'training_options.json'))
    assert options['resume_pkl'] == str(snap)

    legacy = os.path.join(golden_dir, 'legacy_snapshot_res32.pkl')  # channel_base 1024: 32 channels at 32 px, tiny has 64.
    for resume, args, expected in [(snap, ['--resolution=32'], 'for 16 px images'), (legacy, ['--resolution=32'], 'does not fit')]:
        bad = run_cli([f'--outdir={tmp_path / "c"}'] + [a for a in FAST if not a.startswith('--resolution')] + args +
                      [f'--resume={resume}'], timeout=300)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and expected in lines[0], bad.stderr
        assert not (tmp_path / 'c').exists() or not os.listdir(tmp_path / 'c')
