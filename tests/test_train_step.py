"""One training step of ILSLoss, configured from the ILS_predL / ILS_predN / ILS_L1 presets, against the original's.

Each fixture (tests/fixtures/golden/train_step_<estimator>_<distribution>.pt) holds the original's weights, batch,
fg/mask shifts and the gradient of every parameter after each of four phases: Gmain at kimg 0 (ILS warm-up weight)
and 500 (full weight), Dmain and Dreg; plus the mapping networks' w_avg after each phase.
"""
import functools
import os

import pytest
import torch

import golden_tolerance as tol
from conftest import FIXTURES_DIR
from training import networks, presets
from training.loss import ILSLoss

PRESET_FIXTURES = {'ILS_predL': 'club_predetermined_laplace', 'ILS_predN': 'club_predetermined_gaussian',
                   'ILS_L1': 'l1_distance_predetermined_laplace'}
PHASES = [('Gmain', 0), ('Gmain', 500), ('Dmain', 0), ('Dreg', 0)]


@functools.lru_cache(maxsize=None)
def reference(preset):
    return torch.load(os.path.join(FIXTURES_DIR, f'train_step_{PRESET_FIXTURES[preset]}.pt'), weights_only=False)


@pytest.fixture
def fixture_noise(monkeypatch):
    """The random draws the fixture was made with, whatever order the code makes them in: torch.randn (and
    randn_like) seeded by the requested shape, and torch.randperm a rotation by one place."""
    real_randn = torch.randn

    def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, **_):
        shape = tuple(size[0] if len(size) == 1 and not isinstance(size[0], int) else size)
        if generator is None:
            generator = torch.Generator().manual_seed(hash(shape) % 2 ** 31)
        sample = real_randn(shape, generator=generator, dtype=dtype or torch.float32)
        return sample.to(device or 'cpu').requires_grad_(requires_grad)

    monkeypatch.setattr(torch, 'randn', randn)
    monkeypatch.setattr(torch, 'randn_like', lambda t, **_: randn(t.shape, dtype=t.dtype, device=t.device))
    monkeypatch.setattr(torch, 'randperm', lambda n, *_, **__: torch.arange(n).roll(1))


def networks_from(ref):
    cfg = ref['cfg']
    common = dict(channel_base=cfg['cbase'], channel_max=cfg['cmax'], num_fp16_res=0, conv_clamp=256)
    G = networks.PerturbGenerator(z_dim=cfg['zw'], w_dim=cfg['zw'], c_dim=0, img_resolution=cfg['res'], img_channels=3,
                                  mapping_kwargs=dict(num_layers=cfg['map']), synthesis_kwargs=common,
                                  layer_t_kwargs=dict(xint_max=0.125))
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=cfg['res'], img_channels=3,
                                   epilogue_kwargs=dict(mbstd_group_size=4), **common)
    G.load_state_dict(ref['G_state'], strict=True)
    D.load_state_dict(ref['D_state'], strict=True)
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def loss_from_preset(name, G, D, r1_gamma):
    """ILSLoss with the preset's loss settings, the way train_cli builds it."""
    spec = presets.get_preset(name)
    return ILSLoss(torch.device('cpu'), G, D, r1_gamma=r1_gamma, estimator=spec.estimator,
                   distribution=spec.distribution, ils_sigma=spec.ils_sigma, ils_sigma_init=spec.ils_sigma_init,
                   ils_warmup_kimg=spec.ils_warmup_kimg, msize_weight=spec.msize_weight, max_msize=spec.max_msize)


def test_the_three_losses_are_shipped():
    shipped = sorted(f for f in os.listdir(FIXTURES_DIR) if f.startswith('train_step_'))
    assert shipped == sorted(f'train_step_{name}.pt' for name in PRESET_FIXTURES.values())


@pytest.mark.parametrize('preset', sorted(PRESET_FIXTURES))
def test_presets_are_the_fixtures_losses(preset):
    cfg, spec = reference(preset)['cfg'], presets.get_preset(preset)
    assert (spec.estimator, spec.distribution) == (cfg['estimator'], cfg['distribution'])
    assert [(r['phase'], r['kimg']) for r in reference(preset)['results']] == PHASES


@pytest.mark.parametrize('phase,kimg', PHASES, ids=[f'{p}-kimg{k}' for p, k in PHASES])
@pytest.mark.parametrize('preset', sorted(PRESET_FIXTURES))
def test_one_step_gives_the_original_gradients(preset, phase, kimg, fixture_noise):
    ref = reference(preset)
    expected = next(r for r in ref['results'] if (r['phase'], r['kimg']) == (phase, kimg))
    G, D = networks_from(ref)
    trained = G if phase.startswith('G') else D
    trained.requires_grad_(True)
    loss_from_preset(preset, G, D, ref['gamma']).accumulate_gradients(phase, ref['real'], ref['z'], ref['eps'],
                                                                      expected['gain'], kimg)
    trained.requires_grad_(False)
    ours = dict(trained.named_parameters())

    with_grad = {name for name, g in expected['grads'].items() if g is not None}
    assert {name for name, p in ours.items() if p.grad is not None} == with_grad
    errors = {name: tol.grad_rel_err(ours[name].grad, expected['grads'][name]) for name in with_grad}
    worst = max(errors, key=errors.get)
    assert errors[worst] < tol.GRADIENTS, f'{worst}: relative gradient error {errors[worst]:.2e}'
    w_avg = {k: v for k, v in G.state_dict().items() if k.endswith('w_avg')}
    assert w_avg.keys() == expected['w_avg'].keys()
    assert max((w_avg[k] - v).abs().max().item() for k, v in expected['w_avg'].items()) < tol.W_AVG
