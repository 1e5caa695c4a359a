"""Bilinear grid_sample whose input gradient can itself be differentiated.

ADA's geometric augments run grid_sample inside D's graph, so the R1 penalty needs the gradient of
grad_input. PyTorch 1.10 to at least 2.0 raise "derivative for aten::grid_sampler_2d_backward is not
implemented" (recent releases, e.g. 2.13, have one). We supply our own, so every supported version works:
grad_input is linear in grad_output, and its adjoint is grid_sample itself.
Only align_corners=False, padding_mode='zeros' and bilinear interpolation are supported (what ADA uses).
"""
import torch

enabled = True  # False: fall back to torch.nn.functional.grid_sample (no double backward).

# Enum values of aten::grid_sampler_2d: interpolation 0 = bilinear, padding 0 = zeros.
_BILINEAR = 0
_ZEROS = 0
_ALIGN_CORNERS = False


def grid_sample(input, grid):
    """F.grid_sample(input, grid, 'bilinear', 'zeros', align_corners=False), double-backward safe in input."""
    if not enabled:
        return torch.nn.functional.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode='zeros',
                                               align_corners=_ALIGN_CORNERS)
    assert input.ndim == 4 and grid.ndim == 4 and grid.shape[-1] == 2
    return _GridSample2d.apply(input, grid)


def _sample(input, grid):
    return torch.ops.aten.grid_sampler_2d(input, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS)


class _GridSample2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return _sample(input, grid)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        # Routed through a second Function so that create_graph=True records a differentiable node.
        return _GridSample2dBackward.apply(grad_output, input, grid, tuple(ctx.needs_input_grad))


class _GridSample2dBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid, output_mask):
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _BILINEAR, _ZEROS, _ALIGN_CORNERS, list(output_mask))
        ctx.save_for_backward(grid)
        ctx.set_materialize_grads(False)  # Lets backward tell "grad_grid unused" (None) from a real request.
        return (grad_input if output_mask[0] else None), (grad_grid if output_mask[1] else None)

    @staticmethod
    def backward(ctx, grad2_grad_input, grad2_grad_grid):
        grid, = ctx.saved_tensors
        # grad_input = S(grid)^T grad_output, so d<w, grad_input>/d grad_output = S(grid) w = grid_sample(w, grid).
        # grad_input does not depend on input (bilinear sampling is linear in it). Its dependence on grid, and
        # everything about grad_grid, would need second derivatives of the sampling weights: not provided.
        if grad2_grad_grid is not None:
            raise NotImplementedError('grid_sample_gradfix: double backward through the grid gradient')
        if grad2_grad_input is not None and ctx.needs_input_grad[2]:
            raise NotImplementedError('grid_sample_gradfix: double backward w.r.t. grid')
        grad2_grad_output = None
        if grad2_grad_input is not None and ctx.needs_input_grad[0]:
            grad2_grad_output = _GridSample2d.apply(grad2_grad_input, grid)
        return grad2_grad_output, None, None, None
