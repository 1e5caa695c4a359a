"""Fused multiply-add a * b + c whose backward sums gradients back to each operand's own (broadcast) shape."""
import torch


def fma(a, b, c):
    return _FusedMultiplyAdd.apply(a, b, c)


def _unbroadcast(x, shape):
    """Sum `x` over the dimensions that were broadcast to reach it from `shape`."""
    extra = x.ndim - len(shape)
    if extra:
        x = x.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and x.shape[i] != 1)
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    return x


class _FusedMultiplyAdd(torch.autograd.Function):
    """torch.addcmul with a hand-written backward: no autograd graph for the broadcast reductions."""

    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        need_a, need_b, need_c = ctx.needs_input_grad[:3]
        return (_unbroadcast(dout * b, a.shape) if need_a else None,
                _unbroadcast(dout * a, b.shape) if need_b else None,
                _unbroadcast(dout, ctx.c_shape) if need_c else None)
