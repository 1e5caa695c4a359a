"""Upsample, FIR-filter and downsample a batch of 2-D images in one op (the resampling primitive of StyleGAN2).

upfirdn2d(x) = downsample(FIR(pad(zero_insert_upsample(x)))). On CUDA a compiled kernel is used when it builds;
elsewhere, and as the fallback, the pure-PyTorch path below.
"""
import torch
import torch.nn.functional as F


def _parse_scaling(scaling):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = scaling
    assert sx >= 1 and sy >= 1
    return int(sx), int(sy)


def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    return [int(p) for p in padding]


def _get_filter_size(f):
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2)
    return f.shape[-1], f.shape[0]


def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Turn filter taps into the float32 tensor the ops expect.

    A 1-D list is kept separable when long (>= 8 taps) and turned into its 2-D outer product otherwise.
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    assert f.ndim in (0, 1, 2) and f.numel() > 0
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Pad, upsample, filter and downsample a batch of images [N,C,H,W].

    up/down: int or (x, y). padding: int, (px, py) or (px0, px1, py0, py1), applied after upsampling; negative
    values crop. f: a 2-D filter or a 1-D separable one, or None for the identity. The filter is convolved (flipped)
    unless flip_filter, and scaled by gain ** (f.ndim / 2).
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if impl in ('auto', 'cuda') and x.device.type == 'cuda':
        from . import cuda_plugins
        y = cuda_plugins.upfirdn2d_cuda(x, f, up=_parse_scaling(up), down=_parse_scaling(down),
                                        padding=_parse_padding(padding), flip_filter=flip_filter, gain=gain)
        if y is not None:
            return y
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Pure-PyTorch implementation; differentiable to any order."""
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2) and f.dtype == torch.float32
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    channels = x.shape[1]

    # The op is a convolution, so the kernel is the flipped filter (unless the caller asked for correlation).
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    kernels = [f[None, None]] if f.ndim == 2 else [f[None, None, None, :], f[None, None, :, None]]

    if upx > 1 or upy > 1:
        x = _zero_insert_upsample(x, upx, upy)
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0): x.shape[2] - max(-pady1, 0), max(-padx0, 0): x.shape[3] - max(-padx1, 0)]
    for k in kernels:
        x = F.conv2d(x, k.expand(channels, 1, *k.shape[2:]), groups=channels)
    return x[:, :, ::downy, ::downx]


def _zero_insert_upsample(x, upx, upy):
    """[N,C,H,W] -> [N,C,H*upy,W*upx] with the input at every up-th pixel and zeros between."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Filter with `f` keeping the size ('same' padding), optionally with extra padding."""
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + fw // 2, padx1 + (fw - 1) // 2, pady0 + fh // 2, pady1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Upsample by `up` with interpolation filter `f`; the output is exactly `up` times larger."""
    upx, upy = _parse_scaling(up)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw + upx - 1) // 2, padx1 + (fw - upx) // 2, pady0 + (fh + upy - 1) // 2, pady1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Downsample by `down` with anti-aliasing filter `f`; the output is exactly `down` times smaller."""
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [padx0 + (fw - downx + 1) // 2, padx1 + (fw - downx) // 2, pady0 + (fh - downy + 1) // 2, pady1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
