"""The custom ops against the reference's golden outputs, and their higher-order gradients."""
import pytest
import torch

import golden_tolerance as tol
from golden_tolerance import rel_err

from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d
from training.networks import modulated_conv2d


def test_upfirdn2d_matches_reference(golden):
    cases = golden.ops['upfirdn2d']
    for c in cases:
        y = upfirdn2d.upfirdn2d(c['x'], c['f'], up=c['up'], down=c['down'], padding=c['padding'],
                                flip_filter=c['flip_filter'], gain=c['gain'])
        assert rel_err(y, c['y']) < tol.OPS
        if c['taps'] is not None:
            assert rel_err(upfirdn2d.setup_filter(c['taps']), c['f']) < tol.OPS
    assert any(c['taps'] is not None for c in cases)


def test_bias_act_matches_reference(golden):
    acts = set()
    for c in golden.ops['bias_act']:
        y = bias_act.bias_act(c['x'], c['b'], act=c['act'], alpha=c['alpha'], gain=c['gain'], clamp=c['clamp'])
        assert rel_err(y, c['y']) < tol.OPS, c['act']
        acts.add(c['act'])
    assert acts == set(bias_act.activation_funcs)


def test_conv2d_resample_matches_reference(golden):
    for c in golden.ops['conv2d_resample']:
        y = conv2d_resample.conv2d_resample(c['x'], c['w'], f=c['f'], up=c['up'], down=c['down'], padding=c['padding'],
                                            groups=c['groups'], flip_weight=c['flip_weight'])
        assert rel_err(y, c['y']) < tol.OPS


def test_modulated_conv2d_matches_reference(golden):
    for c in golden.ops['modulated_conv2d']:
        y = modulated_conv2d(c['x'], c['weight'], c['styles'], noise=c['noise'], up=c['up'], padding=c['padding'],
                             resample_filter=c['resample_filter'], demodulate=c['demodulate'], fused_modconv=c['fused_modconv'])
        assert rel_err(y, c['y']) < tol.OPS


def test_fused_and_unfused_modconv_agree():
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for up in (1, 2):
        a = modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, flip_weight=(up == 1), fused_modconv=True)
        b = modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, flip_weight=(up == 1), fused_modconv=False)
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize('act', sorted(bias_act.activation_funcs))
def test_bias_act_double_backward(act):
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, clamp=2.0)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, b), fast_mode=True)


@pytest.mark.parametrize('up,down,padding', [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, 1), ([2, 1], [1, 2], [1, 0, 2, -1])])
def test_upfirdn2d_double_backward(up, down, padding):
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


@pytest.mark.parametrize('up,down,groups', [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 1, 2), (1, 2, 2)])
def test_conv2d_resample_double_backward(up, down, groups):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=1, groups=groups)  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


def test_fma_gradients_unbroadcast():
    a = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(fma.fma(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fma.fma, (a, b, c))
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))


@pytest.mark.parametrize('f', [[1, 3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8], [[1, 2, 0], [3, 1, 1], [0, 1, 2]]])
@pytest.mark.parametrize('up,down,padding', [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, 1), ([2, 1], [1, 2], [1, 0, 2, -1]),
                                             (2, 2, [-1, 2, 1, -2]), (3, 1, 0)])
@pytest.mark.parametrize('flip_filter', [False, True])
def test_fast_upfirdn2d_equals_reference(f, up, down, padding, flip_filter):
    f = upfirdn2d.setup_filter(f)
    x = torch.randn(2, 3, 9, 7)
    ref = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=2.5, impl='ref')
    fast = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=2.5, impl='fast')
    assert fast.shape == ref.shape and rel_err(fast, ref) < 1e-5


@pytest.mark.parametrize('act', ['linear', 'relu', 'lrelu'])
@pytest.mark.parametrize('with_bias', [False, True])
def test_bias_act_in_place_steps_keep_the_input_and_the_plain_result(act, with_bias):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    before = x.detach().clone()
    y = bias_act.bias_act(x, b, act=act, gain=1.7)
    plain = bias_act.activation_funcs[act].func(x + (b.reshape(1, -1, 1, 1) if with_bias else 0), 0.2) * 1.7
    assert torch.equal(x.detach(), before)
    assert torch.allclose(y, plain, rtol=1e-12, atol=1e-12)
    inputs = (x, b) if with_bias else (x,)
    fn = lambda *a: bias_act.bias_act(a[0], a[1] if with_bias else None, act=act, gain=1.7)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs) and torch.autograd.gradgradcheck(fn, inputs)


def test_channels_last_input_gives_the_same_convolution():
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 9, 9), torch.randn(5, 4, 3, 3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for up, down in [(1, 1), (2, 1), (1, 2)]:
        a = conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=1)
        b = conv2d_resample.conv2d_resample(x.to(memory_format=torch.channels_last), w, f=f, up=up, down=down, padding=1)
        assert rel_err(b, a) < 1e-6
