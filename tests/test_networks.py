"""The layered generator and the discriminator against the reference's golden tensors, and their behaviour."""
import pytest
import torch

import golden_tolerance as tol
from conftest import golden_sets
from golden_tolerance import rel_err
from training import networks


def build(cfg, res, num_fp16_res=0):
    common = dict(channel_base=cfg['channel_base'], channel_max=cfg['channel_max'], num_fp16_res=num_fp16_res,
                  conv_clamp=cfg['conv_clamp'])
    G = networks.PerturbGenerator(z_dim=cfg.get('z_dim', 512), w_dim=cfg.get('w_dim', 512), c_dim=0,
                                  img_resolution=res, img_channels=3,
                                  mapping_kwargs=dict(num_layers=cfg['map_layers']), synthesis_kwargs=dict(common),
                                  layer_t_kwargs=dict(bg_contrast=0., xint_max=cfg['xint_max'], scale_max=0.,
                                                      rotate_max=0., xfrac_max=0.))
    D = networks.DiscriminatorOpen(c_dim=0, img_resolution=res, img_channels=3,
                                   epilogue_kwargs=dict(mbstd_group_size=cfg['mbstd_group_size']), **common)
    return G.eval(), D.eval()


def load_reference(golden, **build_kwargs):
    gold = golden.networks
    G, D = build(gold['config'], golden.res, **build_kwargs)
    G.load_state_dict(gold['G_state'], strict=True)
    D.load_state_dict(gold['D_state'], strict=True)
    return G, D


@pytest.fixture(scope='module')
def nets(golden):
    return load_reference(golden)


@pytest.fixture(scope='module')
def shipped():
    """The fixture set that ships with the tests, for the behavioural checks (they need no second set)."""
    return golden_sets()[0]


@pytest.fixture(scope='module')
def shipped_nets(shipped):
    return load_reference(shipped)


def test_state_dicts_have_the_reference_names_and_shapes(golden):
    G, D = build(golden.networks['config'], golden.res)
    for ours, ref in ((G.state_dict(), golden.networks['G_state']), (D.state_dict(), golden.networks['D_state'])):
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


@pytest.mark.parametrize('psi,key', [(1, 'layers'), (0.7, 'layers_trunc_0p7')])
def test_generator_layers_match_reference(nets, golden, psi, key):
    G, _ = nets
    gold = golden.networks
    with torch.no_grad():
        out = G(gold['z'], None, truncation_psi=psi, return_layers=True, noise_mode='const')
    for k in ('bg', 'fg', 'mask', 'img'):
        assert rel_err(out[k], gold[key][k]) < tol.NETWORKS, k


def test_perturbed_layers_match_reference(nets, golden):
    G, _ = nets
    gold = golden.networks
    with torch.no_grad():
        layers, shifted, _ = G.generate_layer(gold['z'], None, gold['eps'], noise_mode='const')
    for k in ('bg', 'fg', 'mask', 'img'):
        assert rel_err(shifted[k], gold['t_layers'][k]) < tol.NETWORKS, k
    # The composite is rebuilt from the shifted layers; the background never moves.
    assert torch.equal(shifted['bg'], layers['bg'])
    assert torch.allclose(shifted['img'], (1 - shifted['mask']) * shifted['bg'] + shifted['mask'] * shifted['fg'])


def test_discriminator_matches_reference(nets, golden):
    _, D = nets
    gold = golden.networks
    with torch.no_grad():
        assert rel_err(D(gold['D_in'], None), gold['D_out']) < tol.NETWORKS
        logits, (feat, _) = D(gold['D_in'], None, get_feature=True)
    assert rel_err(feat, gold['D_feat4']) < tol.NETWORKS


def test_layer_dict_conventions(shipped_nets, shipped):
    G, _ = shipped_nets
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        out = G(z, None, return_layers=True, noise_mode='const')
        img = G(z, None, noise_mode='const')
    m = out['mask']
    assert m.shape == (2, 1, shipped.res, shipped.res) and m.min() >= 0 and m.max() <= 1
    assert torch.allclose(out['fg*mask'], (1 - m) + m * out['fg'])  # fg on white, as the original saves it
    assert torch.allclose(img, out['img'])


def test_pixel_blit_shifts_with_zero_fill():
    x = torch.arange(16.).reshape(1, 1, 4, 4).repeat(2, 1, 1, 1)
    out = networks.pixel_blit(x, torch.tensor([1, -2]), torch.tensor([0, 1]))
    assert torch.equal(out[0, 0, :, 1:], x[0, 0, :, :3]) and (out[0, 0, :, 0] == 0).all()
    assert torch.equal(out[1, 0, 1:, :2], x[1, 0, :3, 2:]) and (out[1, 0, 0] == 0).all() and (out[1, 0, :, 2:] == 0).all()


def test_layer_transform_eps_layout():
    assert networks.LayerTransform().eps_dim == 2
    assert networks.LayerTransform(bg_contrast=0.5, xint_max=0.1).eps_dim == 3
    assert networks.LayerTransform(xint_max=0, xfrac_max=0.1, rotate_max=0.1, scale_max=0.1).eps_dim == 4
    with pytest.raises(AssertionError):
        networks.LayerTransform(xint_max=0.1, rotate_max=0.1)


def test_affine_transform_identity_at_zero_eps():
    tx = networks.LayerTransform(xint_max=0, xfrac_max=0.1, rotate_max=0.2, scale_max=0.2)
    layers = {'bg': torch.randn(2, 3, 8, 8), 'fg': torch.randn(2, 3, 8, 8), 'mask': torch.rand(2, 1, 8, 8)}
    out = tx(layers, torch.zeros(2, tx.eps_dim))
    assert torch.allclose(out['fg'], layers['fg'], atol=1e-5) and torch.allclose(out['mask'], layers['mask'], atol=1e-5)


def test_fp16_blocks_run_in_fp32_on_cpu(shipped):
    G, D = build(shipped.networks['config'], shipped.res, num_fp16_res=4)
    G.train()
    img = G(torch.randn(4, G.z_dim), None)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert D(img, None).dtype == torch.float32


def test_conv_clamp_is_skipped_on_cpu(shipped):
    """Clamping guards fp16 on CUDA only: on the CPU a tiny clamp changes nothing."""
    gold = shipped.networks
    cfg = dict(gold['config'], conv_clamp=1e-3)
    G, D = build(cfg, shipped.res)
    G.load_state_dict(gold['G_state'], strict=True)
    D.load_state_dict(gold['D_state'], strict=True)
    with torch.no_grad():
        out = G(gold['z'], None, return_layers=True, noise_mode='const')
        logits = D(gold['D_in'], None)
    assert rel_err(out['img'], gold['layers']['img']) < tol.NETWORKS and rel_err(logits, gold['D_out']) < tol.NETWORKS


def test_cpu_activations_are_channels_last_and_outputs_contiguous(shipped_nets):
    G, D = shipped_nets
    seen = []
    hook = G.synthesis_bg.b16.conv1.register_forward_hook(lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim), None)
    hook.remove()
    assert seen == [True] and img.is_contiguous() and D(img, None).is_contiguous()


def test_r1_double_backward_through_discriminator(shipped_nets, shipped):
    _, D = shipped_nets
    D = D.train().requires_grad_(True)
    x = torch.randn(4, 3, shipped.res, shipped.res, requires_grad=True)
    grad, = torch.autograd.grad(D(x, None).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in D.parameters())
    assert getattr(D, f'b{shipped.res}').conv0.weight.grad.abs().sum() > 0
    D.requires_grad_(False).eval()


def test_mapping_truncation_and_w_avg():
    m = networks.MappingNetwork(z_dim=8, c_dim=0, w_dim=8, num_ws=3, num_layers=2).train()
    z = torch.randn(16, 8)
    w = m(z, None)
    assert w.shape == (16, 3, 8) and m.w_avg.abs().sum() > 0
    assert torch.allclose(m(z, None, truncation_psi=0, skip_w_avg_update=True), m.w_avg.expand(16, 3, 8))
    cut = m(z, None, truncation_psi=0, truncation_cutoff=1, skip_w_avg_update=True)
    assert torch.allclose(cut[:, 0], m.w_avg.expand(16, 8))
    assert torch.allclose(cut[:, 1:], w[:, 1:], atol=1e-5)


@pytest.mark.parametrize('n_conv', [1, 3])
def test_synthesis_conv_count(n_conv):
    s = networks.SynthesisNetwork(w_dim=16, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                                  n_conv_per_res=n_conv)
    assert s.num_ws == (n_conv - 1) + n_conv * 2 + 1
    assert s(torch.randn(2, s.num_ws, 16)).shape == (2, 3, 16, 16)


def test_mask_logit_bias_changes_only_the_mask_channel_and_empties_the_initial_foreground(shipped):
    torch.manual_seed(0)
    G, _ = build(shipped.networks['config'], shipped.res)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    z = torch.randn(16, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        area0 = G(z, None, return_layers=True, noise_mode='const')['mask'].mean()
        networks.set_mask_logit_bias(G, -2)
        area1 = G(z, None, return_layers=True, noise_mode='const')['mask'].mean()
    changed = [k for k, v in G.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == [f'synthesis_fg.b{G.img_resolution}.torgb.bias']
    bias = G.state_dict()[changed[0]]
    assert bias[G.img_channels] == -2 and torch.equal(bias[:G.img_channels], before[changed[0]][:G.img_channels])
    assert area1 < area0 - 0.15
