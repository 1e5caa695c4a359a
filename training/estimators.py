"""Learned conditional distributions q(x | y) for the ILS_learnL / ILS_learnN configurations.

Each estimator is a U-Net on the condition y (64x64) that predicts a per-pixel mean and log-scale of a Laplace or
Gaussian over x. ModelBag holds one estimator per region pair; it trains in D's optimiser (see loss.py).
"""
import math

import torch.nn.functional as F
from torch import nn

from torch_utils import persistence
from torch_utils.unet_blocks import Down, Up, double_conv


class ConditionalUNet(nn.Module):
    """U-Net 64-128-256-256-256 whose two 1x1 heads give the mean and the tanh-bounded log-scale."""

    def __init__(self, channels=3):
        super().__init__()
        self.inc = double_conv(channels, 64)
        self.downs = nn.ModuleList([Down(64, 128), Down(128, 256), Down(256, 256), Down(256, 256)])
        self.ups = nn.ModuleList([Up(512, 256), Up(512, 128), Up(256, 64), Up(128, 64)])
        self.mu = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(inplace=True), nn.Conv2d(64, channels, 1))
        self.log_scale = nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(inplace=True), nn.Conv2d(64, channels, 1), nn.Tanh())

    def forward(self, y):
        skips = [self.inc(y)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.mu(x), self.log_scale(x)


@persistence.persistent_class
class ModelBag(nn.Module):
    """One ConditionalUNet per region pair; inputs are resized (nearest) to `resolution` to save compute."""

    def __init__(self, distribution='neural_laplace', num_autoreg=2, resolution=64, input_channels=3):
        super().__init__()
        assert distribution in ('neural_laplace', 'neural_gaussian')
        self.distribution = distribution
        self.resolution = resolution
        self.models = nn.ModuleList([ConditionalUNet(input_channels) for _ in range(num_autoreg)])

    def _resize(self, t):
        return F.interpolate(t, size=(self.resolution, self.resolution), mode='nearest')

    def forward(self, conditions):
        """(mu, log_scale) of q(x_i | y_i) for each region pair's condition y_i, at the estimator's resolution.

        One call serves every pair, so that a DistributedDataParallel wrapper sees one forward per backward.
        """
        return [model(self._resize(y)) for model, y in zip(self.models, conditions)]

    def log_prob_terms(self, x, mu, log_scale):
        """Per-pixel log q(x | y) without constants, [N,C,H,W]; x is resized to the estimator's resolution."""
        x = self._resize(x)
        if self.distribution == 'neural_laplace':
            return -(x - mu).abs() / log_scale.exp()
        return -(x - mu).square() / log_scale.exp()

    def nll(self, x, mu, log_scale):
        """Negative log-likelihood summed over pixels, averaged over the batch (the original's form)."""
        terms = self.log_prob_terms(x, mu, log_scale)
        if self.distribution == 'neural_laplace':
            log_q = -log_scale + terms
        else:
            log_q = terms - log_scale - 0.5 * math.log(2 * math.pi)  # As the original: no 1/2 on the first two terms.
        return -log_q.flatten(1).sum(dim=1).mean()
