"""Optional CUDA accelerators for bias_act and upfirdn2d (Python glue + autograd).

The kernels (bias_act_kernel.cu, upfirdn2d_kernel.cu) and their host glue (*_plugin.cpp) are compiled on first use
by torch_utils.custom_ops.get_plugin and registered as the dispatcher ops torch.ops.ilsgan_bias_act.bias_act and
torch.ops.ilsgan_upfirdn2d.upfirdn2d. bias_act_cuda() / upfirdn2d_cuda() return None whenever the plugin cannot be
used (no CUDA tensor, no CUDA, build failure -- reported by one warning --, ILSGAN_NO_CUDA_OPS=1), so the callers
in bias_act.py / upfirdn2d.py fall back to their pure-PyTorch reference. The glue behind them, bias_act_glue() and
upfirdn2d_glue(), takes the op as an argument: the tests run it on the CPU over host-emulated kernels.

Autograd: first and second derivatives are supported (R1 needs the double backward).
  bias_act:  y = clamp(act(x + b) * gain). The gradient op dx = dy * act'(s) * gain (masked where clamped) is itself
             an autograd Function whose backward gives d(dy) = ddx * act'(s) * gain and, for the activations with a
             non-zero second derivative, d(x) = ddx * dy * act''(s) * gain (d(b) = its reduction). For linear, relu
             and lrelu the second derivative is zero and only the masked multiply remains. Third derivatives are not
             supported.
  upfirdn2d: the gradient is upfirdn2d of dy with up/down swapped, the filter flipped and adjusted padding; it uses
             the same Function, so derivatives of any order work.
"""
import collections
import os
import threading

import torch

from .. import custom_ops
from .activations import activation_funcs

__all__ = ['bias_act_cuda', 'upfirdn2d_cuda', 'bias_act_glue', 'upfirdn2d_glue', 'is_available']

_SRC_DIR = os.path.dirname(os.path.abspath(__file__))

_DTYPES = frozenset([torch.float32, torch.float64, torch.float16, torch.bfloat16])

# Kernel choice for upfirdn2d (upfirdn2d_kernel.h: Impl).
IMPL_AUTO, IMPL_GENERIC, IMPL_TILED = 0, 1, 2

_lock = threading.Lock()
_ops = {}  # 'bias_act' / 'upfirdn2d' -> callable op, or None when the plugin is unavailable


# Headers included by both plugins (next to each op's own <name>_kernel.h).
COMMON_HEADERS = ('kernel_common.h', 'plugin_common.h')


def plugin_headers(name):
    """Every header the sources of plugin `name` include: get_plugin copies them next to the sources and hashes
    them into the build's cache key, so an edited header gets a fresh build."""
    return [f'{name}_kernel.h', *COMMON_HEADERS]


def _build_op(name):
    lib = custom_ops.get_plugin(
        f'{name}_plugin',
        sources=[f'{name}_plugin.cpp', f'{name}_kernel.cu'],
        headers=plugin_headers(name),
        source_dir=_SRC_DIR,
        is_python_module=False,      # the .cpp registers a dispatcher op (TORCH_LIBRARY), no pybind11
        extra_cflags=['-O2'],
        extra_cuda_cflags=['-O3'],
    )
    if lib is None:
        return None
    return getattr(getattr(torch.ops, f'ilsgan_{name}'), name)


def _get_op(name):
    if custom_ops.plugins_disabled():
        return None
    with _lock:
        if name not in _ops:
            _ops[name] = _build_op(name)
        return _ops[name]


def _usable(x):
    return isinstance(x, torch.Tensor) and x.dtype in _DTYPES


def _is_cuda(x):
    return isinstance(x, torch.Tensor) and x.is_cuda


def is_available():
    """True when CUDA is available and both plugins are built (builds them on first call)."""
    if custom_ops.plugins_disabled() or not torch.cuda.is_available():
        return False
    return _get_op('bias_act') is not None and _get_op('upfirdn2d') is not None


# ----------------------------------------------------------------------------------------------------------------
# bias_act

_BiasActCfg = collections.namedtuple('_BiasActCfg', 'op dim act act_id alpha gain clamp save_x save_y has_2nd')


def _bias_reduce(dx, dim):
    """Sum dx over every axis except `dim` (the gradient of a bias broadcast along dim)."""
    axes = [i for i in range(dx.ndim) if i != dim]
    return dx.sum(dim=axes) if axes else dx


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, cfg):
        y = cfg.op(x, b, None, None, None, 0, cfg.dim, cfg.act_id, cfg.alpha, cfg.gain, cfg.clamp)
        ctx.cfg = cfg
        ctx.save_for_backward(x if cfg.save_x else None, b, y if cfg.save_y else None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b, y = ctx.saved_tensors
        cfg = ctx.cfg
        need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = db = None
        if need_x or need_b:
            dx = _BiasActGrad.apply(dy, x, b, y, cfg)
        if need_b:
            db = _bias_reduce(dx, cfg.dim)
        return (dx if need_x else None), db, None


class _BiasActGrad(torch.autograd.Function):
    """dx = dy * act'(x + b) * gain, zero where the forward output was clamped."""

    @staticmethod
    def forward(ctx, dy, x, b, y, cfg):
        dx = cfg.op(dy, b, x, y, None, 1, cfg.dim, cfg.act_id, cfg.alpha, cfg.gain, cfg.clamp)
        ctx.cfg = cfg
        ctx.save_for_backward(dy if cfg.has_2nd else None, x, b, y)
        return dx

    @staticmethod
    def backward(ctx, ddx):
        dy, x, b, y = ctx.saved_tensors
        cfg = ctx.cfg
        need_dy, need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        d_dy = d_x = d_b = None
        if need_dy:
            d_dy = _BiasActGrad.apply(ddx, x, b, y, cfg)
        if cfg.has_2nd and (need_x or need_b):
            # Total derivative of dx w.r.t. x (through s = x + b); y is treated as a constant below, so this also
            # covers the dependence of dx on y(x).
            d_x = cfg.op(ddx, b, x, y, dy, 2, cfg.dim, cfg.act_id, cfg.alpha, cfg.gain, cfg.clamp)
            if need_b:
                d_b = _bias_reduce(d_x, cfg.dim)
        return d_dy, (d_x if need_x else None), d_b, None, None


def bias_act_cuda(x, b, dim, act, alpha, gain, clamp):
    """y = clamp(act(x + b) * gain, -clamp, clamp) with b broadcast along `dim`, on CUDA.

    x on CUDA (fp16/bf16/fp32/fp64); b 1-D (x.shape[dim] elements) or None; act in linear|relu|lrelu|tanh|sigmoid|
    elu|selu|softplus|swish; alpha/gain/clamp floats (clamp < 0: no clamping; None: the activation's default).
    Returns a tensor differentiable twice, or None if the plugin cannot be used (the caller then falls back).
    """
    if not _is_cuda(x):
        return None
    return bias_act_glue(lambda: _get_op('bias_act'), x, b, dim, act, alpha, gain, clamp)


def bias_act_glue(get_op, x, b, dim, act, alpha, gain, clamp):
    """bias_act_cuda with the kernel op from get_op(), called once the arguments are known to suit it."""
    if not _usable(x) or act not in activation_funcs:
        return None
    if b is not None and (not isinstance(b, torch.Tensor) or b.device != x.device or b.ndim != 1):
        return None
    if x.ndim == 0:
        return None
    dim = int(dim)
    if not -x.ndim <= dim < x.ndim:
        return None
    dim %= x.ndim
    if b is not None and b.shape[0] != x.shape[dim]:
        return None
    op = get_op()
    if op is None:
        return None

    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    has_2nd = spec.has_2nd_grad
    save_x = has_2nd                                 # the second-order pass needs x (swish's first, too)
    save_y = not save_x and (act != 'linear' or clamp >= 0)
    cfg = _BiasActCfg(op=op, dim=dim, act=act, act_id=spec.kernel_id, alpha=alpha, gain=gain, clamp=clamp,
                      save_x=save_x, save_y=save_y, has_2nd=has_2nd)
    if b is not None and b.dtype != x.dtype:
        # Same result dtype as the reference's x + b (type promotion), e.g. fp16 x with an fp32 bias -> fp32.
        dtype = torch.result_type(x, b)
        if dtype not in _DTYPES:
            return None
        x, b = x.to(dtype), b.to(dtype)
    return _BiasAct.apply(x, b, cfg)


# ----------------------------------------------------------------------------------------------------------------
# upfirdn2d

_UpfirdnCfg = collections.namedtuple('_UpfirdnCfg', 'op upx upy downx downy padx0 padx1 pady0 pady1 flip gain impl')


class _Upfirdn2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, f, cfg):
        y = cfg.op(x, f, cfg.upx, cfg.upy, cfg.downx, cfg.downy, cfg.padx0, cfg.padx1, cfg.pady0, cfg.pady1,
               cfg.flip, cfg.gain, cfg.impl)
        ctx.save_for_backward(f)
        ctx.cfg = cfg
        ctx.in_hw = (x.shape[2], x.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy):
        cfg = ctx.cfg
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            h, w = ctx.in_hw
            oh, ow = dy.shape[2], dy.shape[3]
            fh, fw = f.shape
            # Transpose of the forward: upsample by `down`, correlate with the flipped filter, downsample by `up`.
            gcfg = _UpfirdnCfg(
                op=cfg.op, upx=cfg.downx, upy=cfg.downy, downx=cfg.upx, downy=cfg.upy,
                padx0=fw - 1 - cfg.padx0, padx1=w * cfg.upx - ow * cfg.downx + cfg.padx0 - cfg.upx + 1,
                pady0=fh - 1 - cfg.pady0, pady1=h * cfg.upy - oh * cfg.downy + cfg.pady0 - cfg.upy + 1,
                flip=not cfg.flip, gain=cfg.gain, impl=cfg.impl)
            dx = _Upfirdn2d.apply(dy, f, gcfg)
            assert dx.shape[2:] == (h, w)
        return dx, None, None


def _pair(v):
    if isinstance(v, int):
        return v, v
    vx, vy = v
    return int(vx), int(vy)


def _pad4(p):
    if isinstance(p, int):
        return p, p, p, p
    p = [int(v) for v in p]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    px0, px1, py0, py1 = p
    return px0, px1, py0, py1


def upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain, _impl=IMPL_AUTO):
    """Zero-insert upsample, pad/crop, FIR filter, downsample a batch [N,C,H,W] on CUDA.

    f: 2-D float32 filter, or 1-D separable (applied along x and y), or None (identity). up/down: int or (x, y);
    padding: int, (px, py) or (px0, px1, py0, py1), negative crops. The filter is convolved (flipped) unless
    flip_filter, and scaled so that the whole op is multiplied by `gain` (gain ** (f.ndim / 2) per filter pass).
    Returns a tensor differentiable to any order, or None if the plugin cannot be used. Gradients w.r.t. f are
    not computed: returns None when f requires grad so that the caller's reference handles it.
    """
    if not _is_cuda(x):
        return None
    return upfirdn2d_glue(lambda: _get_op('upfirdn2d'), x, f, up, down, padding, flip_filter, gain, _impl)


def upfirdn2d_glue(get_op, x, f, up, down, padding, flip_filter, gain, _impl=IMPL_AUTO):
    """upfirdn2d_cuda with the kernel op from get_op(), called once the arguments are known to suit it."""
    if not _usable(x) or x.ndim != 4:
        return None
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.numel() == 0 or f.requires_grad:
        return None
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    padx0, padx1, pady0, pady1 = _pad4(padding)
    if min(upx, upy, downx, downy) < 1:
        return None
    op = get_op()
    if op is None:
        return None
    f = f.to(device=x.device, dtype=torch.float32)
    if f.ndim == 1:
        f = torch.outer(f, f)  # separable filter: [y taps, x taps]; gain**(1/2) per pass = gain overall
    f = f.contiguous()
    cfg = _UpfirdnCfg(op=op, upx=upx, upy=upy, downx=downx, downy=downy, padx0=padx0, padx1=padx1, pady0=pady0,
                      pady1=pady1, flip=bool(flip_filter), gain=float(gain), impl=int(_impl))
    return _Upfirdn2d.apply(x, f, cfg)
