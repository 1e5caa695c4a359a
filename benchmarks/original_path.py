"""The original's CPU formulation of the ops, for side-by-side benchmarks against ours.

The original (StyleGAN2-ADA's ops on PyTorch >= 1.10, fp32) differs from this project in arithmetic only, never in
result:
- upfirdn2d inserts zeros to upsample and convolves with the full 2-D filter after an explicit pad (our 'ref');
- modulated_conv2d materialises the per-sample weights [N,O,I,kh,kw] to compute the demodulation coefficients;
- bias_act allocates a new tensor for the bias, the activation and the gain;
- dense layers scale their weights by the equalised-lr gain on every call;
- fp32 activations stay in the contiguous (NCHW) layout;
- the D phase runs D once on the fakes and once on the reals;
- inference in fp32 uses the grouped-conv ("fused") modulated convolution on every device.
Its training loop also ran the D fake backward under anomaly detection and an extra mapping pass for style mixing
at probability 0; neither is emulated here, so the measured speed-up is a lower bound.
"""
import contextlib

import torch

from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d
from training import loss, networks


def _modulated_conv2d_original(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                               demodulate=True, flip_weight=True, fused_modconv=True):
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None
    if not fused_modconv:
        x = x * styles.reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x, weight, f=resample_filter, up=up, down=down, padding=padding,
                                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            return fma.fma(x, dcoefs.reshape(batch_size, -1, 1, 1), noise)
        if demodulate:
            return x * dcoefs.reshape(batch_size, -1, 1, 1)
        return x.add_(noise) if noise is not None else x
    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample.conv2d_resample(x, w.reshape(-1, in_channels, kh, kw), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    return x.add_(noise) if noise is not None else x


def _bias_act_original(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    spec = bias_act.activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _fully_connected_original(self, x):
    # The original's FC: its own weight/bias scaling, addmm for linear layers, bias_act (reference path) otherwise.
    bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
    weight_t = (self.weight.to(x.dtype) * self.weight_gain).t()
    if bias is not None and self.activation == 'linear':
        return torch.addmm(bias.unsqueeze(0), x, weight_t)
    return bias_act.bias_act(x.matmul(weight_t), bias, act=self.activation)


def _run_D_fake_real_original(self, fake, real):
    return self.run_D(fake), self.run_D(real)


def _fused_modconv_original(training, dtype, batch_size, device):
    return (not training) and (dtype == torch.float32 or batch_size == 1)


def _memory_format_original(channels_last, dtype, device):
    return torch.channels_last if channels_last and dtype == torch.float16 else torch.contiguous_format


_PATCHES = [(networks, 'modulated_conv2d', _modulated_conv2d_original),
            (networks, '_memory_format', _memory_format_original),
            (networks, '_fused_modconv', _fused_modconv_original),
            (networks.FullyConnectedLayer, 'forward', _fully_connected_original),
            (bias_act, '_bias_act_ref', _bias_act_original),
            (loss.ILSLoss, 'run_D_fake_real', _run_D_fake_real_original)]


@contextlib.contextmanager
def original_formulation():
    """Run the enclosed code with the original's formulation of the ops listed above."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in _PATCHES]
    for owner, name, replacement in _PATCHES:
        setattr(owner, name, replacement)
    try:
        with upfirdn2d.use_fallback('ref'):
            yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
