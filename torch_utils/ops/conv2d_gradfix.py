"""Convolutions for R1, which differentiates through D's gradient with respect to the images (a double backward).

PyTorch's own double backward of a convolution computes the weight term as a convolution of the input with the
output gradient (a kernel as large as the image), and for a depthwise filter it does so group by group. Inside
`double_backward()` conv2d runs as a Function whose first backward is written with differentiable ops instead: the
input gradient is the transposed convolution of the output gradient, so the second pass is an ordinary backward
of that transposed convolution (a quarter less time for the Dreg phase on the CPU, the same values). Everywhere
else conv2d is the plain op. Inside `no_weight_gradients()` the first backward skips the weight gradient, which
R1's `autograd.grad(..., inputs=images)` does not need.
"""
import contextlib

import torch
import torch.nn.functional as F

_double_backward = False  # Set by double_backward().
_weight_gradients = True  # Cleared by no_weight_gradients().


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if _double_backward and torch.is_grad_enabled():
        return _Conv2d.apply(input, weight, bias, _pair(stride), _pair(padding), _pair(dilation), groups)
    return F.conv2d(input, weight, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input, weight, bias=bias, stride=stride, padding=padding,
                              output_padding=output_padding, groups=groups, dilation=dilation)


@contextlib.contextmanager
def double_backward():
    """Convolutions run inside this will be differentiated twice (the forward of R1's D pass)."""
    global _double_backward
    previous, _double_backward = _double_backward, True
    try:
        yield
    finally:
        _double_backward = previous


@contextlib.contextmanager
def no_weight_gradients():
    """Backward passes run inside this skip the weight gradients of double_backward() convolutions."""
    global _weight_gradients
    previous, _weight_gradients = _weight_gradients, False
    try:
        yield
    finally:
        _weight_gradients = previous


def _input_gradient(grad, weight, input_shape, stride, padding, dilation, groups):
    """d(conv2d)/d(input) applied to `grad`: the transposed convolution, cropped to the input's size."""
    output_padding = [input_shape[i + 2] - ((grad.shape[i + 2] - 1) * stride[i] - 2 * padding[i]
                                            + dilation[i] * (weight.shape[i + 2] - 1) + 1) for i in range(2)]
    return F.conv_transpose2d(grad, weight, stride=stride, padding=padding, output_padding=output_padding,
                              groups=groups, dilation=dilation)


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.bias_shape = None if b is None else list(b.shape)
        return F.conv2d(x, w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_w = need_w and _weight_gradients
        need_b = need_b and _weight_gradients and ctx.bias_shape is not None
        if not torch.is_grad_enabled():  # A plain backward: one native call for every gradient.
            gx, gw, gb = torch.ops.aten.convolution_backward(grad, x, w, ctx.bias_shape, stride, padding, dilation,
                                                             False, [0, 0], groups, [need_x, need_w, need_b])
            return gx, gw, gb, None, None, None, None
        gx = _input_gradient(grad, w, x.shape, stride, padding, dilation, groups) if need_x else None
        gw = _Conv2dWeightGradient.apply(grad, x, w, ctx.conf) if need_w else None
        gb = grad.sum(dim=[0, 2, 3]) if need_b else None
        return gx, gw, gb, None, None, None, None


class _Conv2dWeightGradient(torch.autograd.Function):
    """d(conv2d)/d(weight) applied to the output gradient, itself differentiable once more."""

    @staticmethod
    def forward(ctx, grad, x, w, conf):
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(grad, x, w)
        ctx.conf = conf
        return torch.ops.aten.convolution_backward(grad, x, w, None, stride, padding, dilation, False, [0, 0], groups,
                                                   [False, True, False])[1]

    @staticmethod
    def backward(ctx, grad_gw):
        grad, x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        # gw is bilinear in (grad, x): its derivative along grad is conv2d(x, .), along x the transposed one.
        d_grad = conv2d(x, grad_gw, None, stride, padding, dilation, groups) if ctx.needs_input_grad[0] else None
        d_x = _input_gradient(grad, grad_gw, x.shape, stride, padding, dilation, groups) if ctx.needs_input_grad[1] else None
        return d_grad, d_x, None, None
