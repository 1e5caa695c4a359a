"""conv2d_gradfix: inside double_backward() conv2d has the native op's values and first and second derivatives."""
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix

# (input [N,C,H,W], weight [O,C/groups,kh,kw], stride, padding, dilation, groups, bias)
CASES = [((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1, 1, True),
         ((2, 4, 9, 8), (4, 1, 4, 4), 2, (1, 2), 1, 4, False),    # a depthwise FIR that drops pixels
         ((1, 4, 8, 9), (6, 2, 3, 2), (2, 1), 0, (1, 2), 2, True),
         ((3, 2, 5, 5), (3, 2, 1, 1), 1, 0, 1, 1, False)]


def _r1_style(conv, x, w, b, conf):
    """The forward, and the gradients w.r.t. (x, w, b) of a penalty on d(sum(y^2))/dx, as R1 computes them."""
    y = conv(x, w, b, *conf)
    with conv2d_gradfix.no_weight_gradients():
        gx, = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    penalty = gx.square().sum() + (y * 0).sum()
    return [y.detach()] + list(torch.autograd.grad(penalty, [t for t in (x, w, b) if t is not None]))


@pytest.mark.parametrize('shape, wshape, stride, padding, dilation, groups, bias', CASES)
def test_double_backward_matches_the_native_op(shape, wshape, stride, padding, dilation, groups, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(wshape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(wshape[0], generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    conf = (stride, padding, dilation, groups)
    native = _r1_style(F.conv2d, x, w, b, conf)
    with conv2d_gradfix.double_backward():
        assert type(conv2d_gradfix.conv2d(x, w, b, *conf).grad_fn).__name__ == '_Conv2dBackward'
        ours = _r1_style(conv2d_gradfix.conv2d, x, w, b, conf)
    assert len(ours) == len(native)
    for a, r in zip(ours, native):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)


def test_outside_double_backward_it_is_the_plain_op():
    x, w = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(3, 2, 3, 3)
    assert type(conv2d_gradfix.conv2d(x, w).grad_fn).__name__ == 'ConvolutionBackward0'
    with conv2d_gradfix.double_backward(), torch.no_grad():
        assert conv2d_gradfix.conv2d(x, w).grad_fn is None


def test_gradgradcheck_including_the_weight_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def conv(x, w):
        return conv2d_gradfix.conv2d(x, w, None, (2, 1), (1, 0), 1, 2)
    with conv2d_gradfix.double_backward():
        assert torch.autograd.gradcheck(conv, (x, w))
        assert torch.autograd.gradgradcheck(conv, (x, w))


def test_no_weight_gradients_skips_only_the_weight():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    with conv2d_gradfix.double_backward():
        y = conv2d_gradfix.conv2d(x, w, padding=1)
    with conv2d_gradfix.no_weight_gradients():
        y.sum().backward()
    assert x.grad is not None and w.grad is None
