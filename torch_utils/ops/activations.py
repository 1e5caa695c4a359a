"""The activations of bias_act, in one table for the reference (bias_act.py), the CUDA glue (cuda_plugins.py) and
their tests: reference function, default alpha and gain, and the id of each in the kernel (enum Act in
bias_act_kernel.h)."""
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Activation:
    func: Callable               # (x, alpha) -> act(x).
    kernel_id: int               # enum Act in bias_act_kernel.h.
    def_alpha: float = 0.0
    def_gain: float = 1.0
    has_2nd_grad: bool = False   # A non-zero second derivative: the kernel's double backward needs x.


_SQRT2 = math.sqrt(2)

activation_funcs = {
    'linear': Activation(lambda x, a: x, 0),
    'relu': Activation(lambda x, a: torch.relu(x), 1, def_gain=_SQRT2),
    'lrelu': Activation(lambda x, a: F.leaky_relu(x, a), 2, def_alpha=0.2, def_gain=_SQRT2),
    'tanh': Activation(lambda x, a: torch.tanh(x), 3, has_2nd_grad=True),
    'sigmoid': Activation(lambda x, a: torch.sigmoid(x), 4, has_2nd_grad=True),
    'elu': Activation(lambda x, a: F.elu(x), 5, has_2nd_grad=True),
    'selu': Activation(lambda x, a: F.selu(x), 6, has_2nd_grad=True),
    'softplus': Activation(lambda x, a: F.softplus(x), 7, has_2nd_grad=True),
    'swish': Activation(lambda x, a: torch.sigmoid(x) * x, 8, def_gain=_SQRT2, has_2nd_grad=True),
}
