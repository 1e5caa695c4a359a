"""Upsample, FIR-filter and downsample a batch of 2-D images in one op (the resampling primitive of StyleGAN2).

upfirdn2d(x) = downsample(FIR(pad(zero_insert_upsample(x)))). Three implementations give the same result:
- 'cuda': a compiled kernel, used on CUDA when it builds (cuda_plugins.py);
- 'fast': pure PyTorch, the default elsewhere: a strided transposed conv upsamples without materialising the
  zeros (a rank-1 filter then runs as two 1-D passes), and without upsampling one depthwise conv pads inside the
  op and computes only the kept pixels;
- 'ref': the reference algorithm as the original wrote it, kept for tests and side-by-side benchmarks.
"""
import contextlib

import torch
import torch.nn.functional as F

from . import conv2d_gradfix, cuda_plugins

_fallback_impl = 'fast'  # What 'auto' uses when the CUDA kernel is not in play.


@contextlib.contextmanager
def use_fallback(impl):
    """Run the enclosed code with the 'fast' or the 'ref' pure-PyTorch path (for benchmarks and tests)."""
    global _fallback_impl
    assert impl in ('fast', 'ref')
    previous, _fallback_impl = _fallback_impl, impl
    try:
        yield
    finally:
        _fallback_impl = previous


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
        y = cuda_plugins.upfirdn2d_cuda(x, f, up=_parse_scaling(up), down=_parse_scaling(down),
                                        padding=_parse_padding(padding), flip_filter=flip_filter, gain=gain)
        if y is not None:
            return y
    if impl == 'ref' or (impl == 'auto' and _fallback_impl == 'ref'):
        return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    return _upfirdn2d_fast(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Pure-PyTorch implementation; differentiable to any order."""
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    f = torch.ones([1, 1], dtype=torch.float32, device=x.device) if f is None else f
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2) and f.dtype == torch.float32
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    channels = x.shape[1]

    # The op is a convolution, so the kernel is the flipped filter (unless the caller asked for correlation).
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    f = f if flip_filter else f.flip(list(range(f.ndim)))
    kernels = [f[None, None]] if f.ndim == 2 else [f[None, None, None, :], f[None, None, :, None]]

    if upx > 1 or upy > 1:
        x = _zero_insert_upsample(x, upx, upy)
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0): x.shape[2] - max(-pady1, 0), max(-padx0, 0): x.shape[3] - max(-padx1, 0)]
    for k in kernels:
        x = conv2d_gradfix.conv2d(x, k.expand(channels, 1, *k.shape[2:]), groups=channels)
    return x[:, :, ::downy, ::downx]


def _separable_taps(f):
    """(vertical, horizontal) 1-D taps if `f` is separable, else None. 1-D filters are separable by definition;
    a 2-D one is checked for rank 1 (cheap: filters are a few taps, and the CUDA path never gets here)."""
    if f.ndim == 1:
        return f, f
    col = f.sum(dim=1)
    row = f.sum(dim=0) / f.sum()
    if f.sum() != 0 and torch.allclose(torch.outer(col, row), f, rtol=1e-6, atol=1e-8):
        return col, row
    return None


def _resample_axis(x, k, up, down, pad0, pad1, dim):
    """Upsample by zero insertion, pad, correlate with 1-D kernel `k` and downsample, along `dim` (2 or 3) only.

    Upsampling uses a strided transposed conv with the flipped kernel: output t of the correlation is the transposed
    conv's output t + K - 1 - pad0, so the zeros between input pixels are never multiplied.
    """
    channels, size, taps = x.shape[1], x.shape[dim], k.numel()
    shape = [1, 1, taps, 1] if dim == 2 else [1, 1, 1, taps]
    stride = [up, 1] if dim == 2 else [1, up]
    out_len = size * up + pad0 + pad1 - taps + 1
    if up > 1:
        w = k.flip(0).reshape(shape).expand(channels, *shape[1:])
        x = F.conv_transpose2d(x, w, stride=stride, groups=channels)
        start = taps - 1 - pad0
        end_pad = out_len - (x.shape[dim] - start)
        pads = [-start, end_pad, 0, 0] if dim == 3 else [0, 0, -start, end_pad]
        x = F.pad(x, pads)
        return x.narrow(dim, 0, out_len)[:, :, ::down, :] if dim == 2 else x.narrow(dim, 0, out_len)[:, :, :, ::down]
    pads = [pad0, pad1, 0, 0] if dim == 3 else [0, 0, pad0, pad1]
    x = F.pad(x, pads)
    stride = [down, 1] if dim == 2 else [1, down]
    return conv2d_gradfix.conv2d(x, k.reshape(shape).expand(channels, *shape[1:]), stride=stride, groups=channels)


def _filter_strided(x, f, downx, downy, padding, flip_filter, gain):
    """No upsampling, 2-D filter: one depthwise conv that pads inside the op and strides over the dropped pixels.

    On the CPU a single 4x4 pass is faster than two 1-D passes, and padding inside the conv saves a copy.
    """
    padx0, padx1, pady0, pady1 = padding
    k = f * gain
    if not flip_filter:
        k = k.flip([0, 1])
    px, py = max(min(padx0, padx1), 0), max(min(pady0, pady1), 0)
    extra = [padx0 - px, padx1 - px, pady0 - py, pady1 - py]
    if any(extra):
        x = F.pad(x, extra)  # The asymmetric rest; negative values crop.
    channels = x.shape[1]
    return conv2d_gradfix.conv2d(x, k.to(x.dtype)[None, None].expand(channels, 1, *k.shape), stride=[downy, downx],
                                 padding=[py, px], groups=channels)


def _upfirdn2d_fast(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Same result as _upfirdn2d_ref with less arithmetic; differentiable to any order."""
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2) and f.dtype == torch.float32
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    if upx == upy == 1 and f.ndim == 2:
        return _filter_strided(x, f, downx, downy, [padx0, padx1, pady0, pady1], flip_filter, gain)
    taps = _separable_taps(f)
    if taps is None:
        return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    # Correlation kernels: the filter is flipped unless flip_filter; the 2-D gain is split over the two passes.
    g = gain ** (f.ndim / 2) if f.ndim == 1 else gain ** 0.5
    ky, kx = [(t * g).to(x.dtype) for t in taps]
    if not flip_filter:
        ky, kx = ky.flip(0), kx.flip(0)
    x = _resample_axis(x, kx, upx, downx, padx0, padx1, dim=3)
    return _resample_axis(x, ky, upy, downy, pady0, pady1, dim=2)


def _zero_insert_upsample(x, upx, upy):
    """[N,C,H,W] -> [N,C,H*upy,W*upx] with the input at every up-th pixel and zeros between."""
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


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
