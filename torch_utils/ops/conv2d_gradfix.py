"""Convolutions for the training loop's higher-order gradients (R1 differentiates through D's gradient).

The original needed custom autograd for double backward on PyTorch 1.7-1.9. On PyTorch >= 2.0 the native
convolution supports it, and autograd already skips weight gradients that torch.autograd.grad(..., inputs=x) does
not ask for, so these are thin wrappers kept for the reference's API (conv2d_resample calls them).
"""
import torch.nn.functional as F


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(input, weight, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input, weight, bias=bias, stride=stride, padding=padding,
                              output_padding=output_padding, groups=groups, dilation=dilation)

