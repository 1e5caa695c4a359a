"""U-Net building blocks shared by the segmenter (metrics/unet.py) and the learned ILS estimators
(training/estimators.py)."""
import torch
import torch.nn.functional as F
from torch import nn


def double_conv(in_channels, out_channels):
    """(Conv3x3 with bias -> BatchNorm -> ReLU) twice."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Down(nn.Module):
    """Halve the resolution, then double-conv."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = double_conv(in_channels, out_channels)

    def forward(self, x):
        return self.conv(F.max_pool2d(x, 2))


class Up(nn.Module):
    """Upsample the deep input x2, concatenate [skip, upsampled], then double-conv."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = double_conv(in_channels, out_channels)

    def forward(self, deep, skip):
        deep = F.interpolate(deep, scale_factor=2, mode='bilinear', align_corners=True)
        dy, dx = skip.shape[2] - deep.shape[2], skip.shape[3] - deep.shape[3]
        deep = F.pad(deep, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])  # Odd input sizes only; a no-op at 2^k.
        return self.conv(torch.cat([skip, deep], dim=1))
