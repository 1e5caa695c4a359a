"""Fused bias + activation + gain + clamp.

y = clamp(act(x + b) * gain, -clamp, clamp), with the bias broadcast along `dim`. On CUDA a compiled kernel is
used when it builds (torch_utils/ops/cuda_plugins.py); everywhere else, and as the fallback, the reference below.
"""
import torch

from . import cuda_plugins
from .activations import activation_funcs


def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='auto'):
    """Add bias `b` along `dim`, apply `act`, scale by `gain` (default: the activation's) and clamp to +-`clamp`.

    impl: 'auto' (the compiled kernel on CUDA when it is available), 'cuda' (the same) or 'ref' (pure PyTorch).
    """
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if impl in ('auto', 'cuda') and x.device.type == 'cuda':
        y = cuda_plugins.bias_act_cuda(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
        if y is not None:
            return y
    return _bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)


def _bias_act_ref(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """Reference implementation from plain PyTorch ops (differentiable to any order).

    For linear/relu/lrelu, act(x + b) * gain == act((x + b) * gain) (gain > 0), so the gain and the activation run in
    place on the one new tensor: two fewer full-size allocations per call, the same values up to rounding.
    """
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    if b is not None:
        assert b.ndim == 1 and b.shape[0] == x.shape[dim]
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if act in _IN_PLACE and gain > 0:
        if b is None:
            x = x * gain  # A new tensor: the caller's is never modified.
        elif gain != 1:
            x.mul_(gain)
        if act != 'linear':
            _IN_PLACE[act](x, alpha)
    else:
        x = spec.func(x, alpha)
        x = x if gain == 1 else x * gain
    return x.clamp(-clamp, clamp) if clamp >= 0 else x


# Positively homogeneous activations with an in-place form whose backward needs only its output.
_IN_PLACE = {
    'linear': None,
    'relu': lambda x, a: torch.relu_(x),
    'lrelu': lambda x, a: torch.nn.functional.leaky_relu_(x, a),
}
