"""How closely this code must reproduce the original's tensors, per kind of check.

docs/results.md and docs/differences.md quote these numbers; the measured worst errors are far below them (results.md).
"""
import torch

OPS = 1e-6        # upfirdn2d, setup_filter, bias_act, conv2d_resample, modulated_conv2d
NETWORKS = 1e-5   # generator layers (psi 1 and 0.7), shifted layers, D logits and 4x4 features, the original's pickle
GRADIENTS = 1e-4  # every parameter gradient after one training step, relative to the largest entry of that gradient
W_AVG = 1e-6      # the mapping networks' w_avg after the step (absolute)


def rel_err(a, b):
    """max |a - b| / max(1, max |b|): relative for large outputs, absolute for small ones."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1.0))


def grad_rel_err(a, b):
    """max |a - b| / max |b| (gradients can be tiny; their scale is their own)."""
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-8))
