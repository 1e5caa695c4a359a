"""ADA augmentation pipe, its p controller, and the double-backward-safe grid_sample."""
import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import grid_sample_gradfix
from training.augment import AdaController, AugmentPipe, augpipe_specs


def _grid(n, h, w, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand([n, h, w, 2], generator=g, dtype=dtype) * 2.4 - 1.2  # Some samples fall outside: zeros.


def _images(n=4, c=3, size=32, seed=0):
    return torch.randn([n, c, size, size], generator=torch.Generator().manual_seed(seed))


def _pipe(spec, p=1.0):
    pipe = AugmentPipe(**augpipe_specs[spec]) if isinstance(spec, str) else AugmentPipe(**spec)
    pipe.p.fill_(p)
    return pipe


def _tiny_d(channels=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 3, padding=1), torch.nn.Softplus(),
                               torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.Softplus(),
                               torch.nn.Flatten(), torch.nn.LazyLinear(1))


# ---------------------------------------------------------------------------------------------------------------
# grid_sample_gradfix


def test_grid_sample_matches_functional_values_and_gradients():
    x = _images(2, 3, 9).requires_grad_(True)
    grid = _grid(2, 7, 5).requires_grad_(True)
    ref_x, ref_grid = x.detach().clone().requires_grad_(True), grid.detach().clone().requires_grad_(True)
    y = grid_sample_gradfix.grid_sample(x, grid)
    y_ref = F.grid_sample(ref_x, ref_grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    assert torch.equal(y, y_ref)
    w = torch.randn_like(y)
    gx, gg = torch.autograd.grad((y * w).sum(), [x, grid])
    gx_ref, gg_ref = torch.autograd.grad((y_ref * w).sum(), [ref_x, ref_grid])
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    torch.testing.assert_close(gg, gg_ref, rtol=0, atol=0)


def test_grid_sample_gradcheck_and_gradgradcheck_input():
    x = torch.randn([1, 2, 4, 5], dtype=torch.float64, requires_grad=True)
    grid = _grid(1, 3, 3, dtype=torch.float64)
    fn = lambda inp: grid_sample_gradfix.grid_sample(inp, grid)
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_grid_sample_gradcheck_grid_first_order():
    x = torch.randn([1, 2, 4, 5], dtype=torch.float64)
    grid = _grid(1, 3, 3, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda g: grid_sample_gradfix.grid_sample(x, g), (grid,))


def test_grid_sample_r1_double_backward_matches_explicit_sampling_matrix():
    # Bilinear sampling is linear in the input: y = S x. Building S explicitly gives a reference that any
    # PyTorch can differentiate twice, to compare the R1-style second-order gradients against.
    n, c, h, w = 1, 2, 6, 6
    grid = _grid(n, 5, 5)
    basis = torch.eye(c * h * w).reshape(c * h * w, c, h, w)
    S = torch.stack([F.grid_sample(b[None], grid, align_corners=False).flatten() for b in basis], dim=1)

    def r1_param_grads(sample):
        torch.manual_seed(1)
        pre = torch.nn.Conv2d(c, c, 3, padding=1)  # Upstream params: grad_output of grid_sample depends on them.
        post = torch.nn.Conv2d(c, 1, 3)
        x = _images(n, c, h).requires_grad_(True)
        logits = post(torch.tanh(sample(pre(x)))).sum()
        gx, = torch.autograd.grad(logits, x, create_graph=True)
        gx.square().sum().backward()
        return [p.grad for p in list(pre.parameters()) + list(post.parameters())]

    ours = r1_param_grads(lambda t: grid_sample_gradfix.grid_sample(t, grid))
    ref = r1_param_grads(lambda t: (t.flatten(1) @ S.T).reshape(n, c, 5, 5))
    assert [a is None for a in ours] == [b is None for b in ref] == [False, False, False, True]  # post.bias: no R1 grad
    for a, b in zip(ours[:3], ref[:3]):
        assert torch.isfinite(a).all() and a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_grid_sample_second_order_through_grid_is_refused():
    x = torch.randn([1, 1, 4, 4], requires_grad=True)
    grid = _grid(1, 3, 3).requires_grad_(True)
    gx, = torch.autograd.grad(grid_sample_gradfix.grid_sample(x, grid).square().sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError):
        torch.autograd.grad(gx.square().sum(), grid)


def test_grid_sample_disabled_falls_back(monkeypatch):
    monkeypatch.setattr(grid_sample_gradfix, 'enabled', False)
    x, grid = _images(1, 2, 5), _grid(1, 4, 4)
    y = grid_sample_gradfix.grid_sample(x, grid)
    assert y.grad_fn is None or 'GridSampler' in type(y.grad_fn).__name__
    assert torch.equal(y, F.grid_sample(x, grid, align_corners=False))

# ---------------------------------------------------------------------------------------------------------------
# AugmentPipe


def test_presets_are_the_stylegan2_ada_ones():
    blit, geom = dict(xflip=1, rotate90=1, xint=1), dict(scale=1, rotate=1, aniso=1, xfrac=1)
    color = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    assert augpipe_specs == {
        'blit': blit, 'geom': geom, 'color': color, 'filter': dict(imgfilter=1), 'noise': dict(noise=1),
        'cutout': dict(cutout=1), 'bg': {**blit, **geom}, 'bgc': {**blit, **geom, **color},
        'bgcf': {**blit, **geom, **color, 'imgfilter': 1},
        'bgcfn': {**blit, **geom, **color, 'imgfilter': 1, 'noise': 1},
        'bgcfnc': {**blit, **geom, **color, 'imgfilter': 1, 'noise': 1, 'cutout': 1}}


def test_state_dict_layout_matches_original():
    state = AugmentPipe(**augpipe_specs['bgc']).state_dict()
    assert list(state) == ['p', 'Hz_geom', 'Hz_fbank']
    assert state['p'].shape == () and state['p'].item() == 1
    assert state['Hz_geom'].shape == (12,) and state['Hz_fbank'].shape == (4, 43)
    assert all(t.dtype == torch.float32 for t in state.values())
    # Hz_geom: sym6 normalised to unit DC gain; orthogonal, so its even autocorrelation lags vanish.
    h = state['Hz_geom'].double() * np.sqrt(2)
    torch.testing.assert_close(h.sum(), torch.tensor(np.sqrt(2), dtype=torch.float64))
    auto = torch.tensor(np.convolve(h.numpy(), h.numpy()[::-1]))
    torch.testing.assert_close(auto[1::2], F.one_hot(torch.tensor(5), 11).double(), atol=1e-6, rtol=0)
    # Hz_fbank: zero-phase (symmetric) bands that sum to a unit impulse.
    bank = state['Hz_fbank']
    torch.testing.assert_close(bank, bank.flip(1))
    torch.testing.assert_close(bank.sum(0), F.one_hot(torch.tensor(21), 43).float(), atol=1e-6, rtol=0)
    AugmentPipe(**augpipe_specs['bgcfnc']).load_state_dict(state, strict=True)



def test_pipe_survives_deepcopy_and_pickle():
    # Snapshots store a deep copy of the pipe; p must travel with it.
    pipe = _pipe('bgcfnc', p=0.37)
    for clone in [copy.deepcopy(pipe), pickle.loads(pickle.dumps(pipe))]:
        assert clone.p.item() == pytest.approx(0.37) and clone.imgfilter_bands == [1, 1, 1, 1]
        assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), pipe.state_dict().values()))

@pytest.mark.parametrize('spec', list(augpipe_specs))
def test_every_preset_runs_at_full_strength(spec):
    torch.manual_seed(0)
    x = _images()
    y = _pipe(spec)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert not torch.equal(y, x)


@pytest.mark.parametrize('spec', ['bgcfnc', 'geom', 'filter'])
def test_zero_strength_is_exact_identity(spec):
    x = _images()
    pipe = _pipe(spec, p=0)
    assert torch.equal(pipe(x), x)
    gray = _images(c=1)
    assert torch.equal(pipe(gray), gray)


def test_unselected_samples_pass_through_exactly():
    torch.manual_seed(3)
    x = _images(n=64)
    y = _pipe('bgc', p=0.05)(x)
    same = (y == x).flatten(1).all(1)
    assert 0 < same.sum() < 64  # Some samples drew nothing; those are untouched bit for bit.


def _smooth(n=2, size=32, seed=0):
    """Band-limited content, as in natural images: the blits then run through ADA's resampler nearly losslessly."""
    low = torch.randn([n, 3, 6, 6], generator=torch.Generator().manual_seed(seed))
    return F.interpolate(low, size=size, mode='bicubic', align_corners=False)


def _err(a, b):
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    return (a - b)[inner].abs().max().item() / b.abs().max().item()


def test_xflip_debug_percentile():
    # As in the original, blits run through the geometric resampler: a flip is a resampled flip (a few %
    # error on smooth content), not a bit-exact one.
    x = _smooth()
    pipe = _pipe(dict(xflip=1))
    assert _err(pipe(x, debug_percentile=0.75), x.flip(3)) < 0.05
    assert _err(pipe(x, debug_percentile=0.25), x) < 1e-5


def test_rotate90_debug_percentile():
    x = _smooth()
    pipe = _pipe(dict(rotate90=1))
    for quarter_turns in range(4):
        y = pipe(x, debug_percentile=(quarter_turns + 0.5) / 4)
        errors = [_err(y, torch.rot90(x, k, dims=(2, 3))) for k in range(4)]
        assert errors[quarter_turns] < 0.05 and sorted(errors)[1] > 0.3


def test_integer_translation_shifts_by_whole_pixels():
    x = _images(size=32)
    y = _pipe(dict(xint=1))(x, debug_percentile=0.75)  # t = 0.5 * 0.125 = 1/16 -> 2 px in x and y
    shifted = torch.roll(x, shifts=(2, 2), dims=(2, 3))
    torch.testing.assert_close(y[:, :, 2:, 2:], shifted[:, :, 2:, 2:], atol=1e-5, rtol=0)


def test_geometric_resampling_preserves_smooth_images_under_fractional_shift():
    # A smooth ramp shifted by a fraction of a pixel stays a ramp (no aliasing artefacts inside).
    size = 32
    ramp = torch.linspace(-1, 1, size).expand(1, 3, size, size).contiguous()
    y = _pipe(dict(xfrac=1))(ramp, debug_percentile=0.6)
    shift = torch.erfinv(torch.tensor(0.2)) * 0.125 * size  # pixels
    expected = ramp - shift * 2 / (size - 1)
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))
    torch.testing.assert_close(y[inner], expected[inner], atol=2e-3, rtol=0)


def test_brightness_and_contrast_on_grey():
    grey = torch.full([4, 3, 8, 8], 0.25)
    b = torch.erfinv(torch.tensor(2 * 0.8 - 1)) * 0.2
    y = _pipe(dict(brightness=1))(grey, debug_percentile=0.8)
    torch.testing.assert_close(y, grey + b)
    c = torch.exp2(torch.erfinv(torch.tensor(2 * 0.8 - 1)) * 0.5)
    y = _pipe(dict(contrast=1))(grey, debug_percentile=0.8)
    torch.testing.assert_close(y, grey * c)


def test_hue_and_saturation_keep_grey_and_luma():
    # Grey lies on the luma axis, which hue rotation and saturation leave fixed; for colours they keep the mean.
    grey = torch.full([2, 3, 8, 8], 0.3)
    colour = _images(2, 3, 8)
    for spec in [dict(hue=1), dict(saturation=1), dict(hue=1, saturation=1)]:
        pipe = _pipe(spec)
        torch.testing.assert_close(pipe(grey, debug_percentile=0.7), grey)
        torch.testing.assert_close(pipe(colour, debug_percentile=0.7).mean(1), colour.mean(1), atol=1e-5, rtol=0)


def test_lumaflip_negates_luma_keeps_chroma():
    x = _images(2, 3, 8)
    y = _pipe(dict(lumaflip=1))(x, debug_percentile=0.9)
    torch.testing.assert_close(y.mean(1), -x.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(y - y.mean(1, keepdim=True), x - x.mean(1, keepdim=True), atol=1e-5, rtol=0)


def test_colour_on_single_channel_images():
    grey = torch.full([2, 1, 8, 8], 0.25)
    y = _pipe('color')(grey, debug_percentile=0.8)
    assert y.shape == grey.shape and torch.isfinite(y).all()


def test_imgfilter_keeps_constant_images():
    # Every band except the lowest has zero DC gain, so a flat image only sees the (normalised) low-band gain.
    flat = torch.full([2, 3, 32, 32], 0.5)
    y = _pipe('filter')(flat)
    per_sample = y.flatten(1)
    torch.testing.assert_close(per_sample, per_sample[:, :1].expand_as(per_sample))


def test_cutout_zeroes_a_centred_square():
    x = torch.ones([1, 3, 32, 32])
    y = _pipe('cutout')(x, debug_percentile=0.5)
    assert y[0, :, 8:24, 8:24].abs().sum() == 0
    assert (y == 0).sum() == 3 * 16 * 16


def test_noise_debug_percentile_zero_is_noiseless():
    x = _images()
    assert torch.equal(_pipe('noise')(x, debug_percentile=0.0), x)


def test_r1_through_bgc_pipe_has_finite_param_grads():
    # THE known breakage of the original on PyTorch >= 1.10: R1 = ||d D(A(x)) / dx||^2 differentiated w.r.t. D.
    torch.manual_seed(0)
    pipe = _pipe('bgc').requires_grad_(False)
    D = _tiny_d()
    x = _images(4, 3, 32).requires_grad_(True)
    logits = D(pipe(x))
    grad, = torch.autograd.grad(logits.sum(), x, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    assert torch.isfinite(penalty) and penalty > 0
    weights = [p for name, p in D.named_parameters() if name.endswith('weight')]
    for p in weights:  # The output bias has no R1 gradient; every weight does.
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_r1_through_bgcf_pipe():
    torch.manual_seed(1)
    D = _tiny_d()
    x = _images(2, 3, 32).requires_grad_(True)
    grad, = torch.autograd.grad(D(_pipe('bgcfnc')(x)).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)

# ---------------------------------------------------------------------------------------------------------------
# AdaController


def _controller(p=0.0, batch_size=32, **kwargs):
    pipe = _pipe('bgc', p=p)
    return pipe, AdaController(pipe, batch_size=batch_size, **kwargs)


def _logits(frac_positive, n=32):
    k = int(round(frac_positive * n))
    return torch.cat([torch.full([k, 1], 2.0), torch.full([n - k, 1], -2.0)])


def test_ada_raises_p_when_d_is_overconfident():
    pipe, ada = _controller(p=0.1)
    step = 32 * 4 / 500_000
    for batch_idx in range(1, 5):  # Updates at batch_idx % 4 == 0, i.e. after iterations 1..4.
        ada.accumulate(_logits(0.9))
        assert ada.step(batch_idx) == (batch_idx == 4)
    assert pipe.p.item() == pytest.approx(0.1 + step)


def test_ada_lowers_p_and_clamps_at_zero():
    pipe, ada = _controller(p=0.0003)
    step = 32 * 4 / 500_000
    for batch_idx in range(1, 9):
        ada.accumulate(_logits(0.25))
        ada.step(batch_idx)
    assert pipe.p.item() == pytest.approx(max(0.0, 0.0003 - 2 * step))
    assert pipe.p.item() == 0.0
    ada.accumulate(_logits(0.25))
    ada.step(12)
    assert pipe.p.item() == 0.0


def test_ada_first_update_at_batch_zero_and_no_data_keeps_p():
    pipe, ada = _controller(p=0.5)
    ada.step(0)  # Nothing accumulated: no NaN, no move.
    assert pipe.p.item() == 0.5
    ada.accumulate(_logits(1.0))
    assert ada.step(0)
    assert pipe.p.item() == pytest.approx(0.5 + 32 * 4 / 500_000)


def test_ada_state_round_trip_resumes_exactly():
    pipe_a, ada_a = _controller(p=0.2, kimg=100)
    ada_a.accumulate(_logits(0.5))
    ada_a.accumulate(_logits(0.5))
    state = ada_a.state_dict()
    assert state['count'] == 64 and state['sign_sum'].item() == 0
    pipe_b, ada_b = _controller(p=0.2, kimg=100)
    ada_b.load_state_dict(state)
    for ada in (ada_a, ada_b):
        ada.accumulate(_logits(1.0))
        ada.accumulate(_logits(1.0))
        ada.step(4)  # mean sign = (0 + 0 + 32 + 32) / 128 = 0.5 < 0.6: p goes down.
    assert pipe_a.p.item() == pipe_b.p.item() == pytest.approx(0.2 - 32 * 4 / 100_000)
    assert ada_b.state_dict() == dict(sign_sum=None, count=0)


@pytest.mark.parametrize('spec, p, expected_identity', [
    (dict(xflip=1), 0.5, 1 - 0.5 * 0.5),  # Drawn with prob p, then a fair coin decides the flip.
    (dict(rotate=1), 0.5, 0.5),  # Pre- and post-rotation each fire with p_rot so that P(either) = p.
    (dict(scale=1, aniso=1), 0.3, 0.7 * 0.7),
])
def test_probabilities_scale_with_p(spec, p, expected_identity):
    torch.manual_seed(0)
    G_inv = _pipe(spec, p=p)._geometric_matrix(20000, 32, 32, None, torch.device('cpu'))
    identity = (G_inv == torch.eye(3)).flatten(1).all(1).float().mean().item()
    assert identity == pytest.approx(expected_identity, abs=0.015)



@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_bgc_r1_and_controller():
    device = torch.device('cuda')
    pipe = _pipe('bgcfnc').to(device)
    D = _tiny_d().to(device)
    x = _images(4, 3, 32).to(device).requires_grad_(True)
    y = pipe(x)
    assert y.device == x.device and torch.isfinite(y).all()
    grad, = torch.autograd.grad(D(y).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
    pipe.p.zero_()
    assert torch.equal(pipe(x.detach()), x.detach())
    ada = AdaController(pipe, batch_size=32)
    ada.accumulate(_logits(1.0).to(device))
    ada.step(0)
    assert pipe.p.item() == pytest.approx(32 * 4 / 500_000)
