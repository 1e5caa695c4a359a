"""The U-Net segmenter of the evaluation protocol: 13,395,394 parameters at the original's width 64, logits [B, 2, H, W].

Only the original's scale=64 topology exists here. Every original caller used it, at 64 and at 128 inputs (the
net is fully convolutional); the unused scale=128 variant wired up1 to the wrong skip and is not reproduced.
"""
from torch import nn

from torch_utils.unet_blocks import Down, Up, double_conv


class UNet(nn.Module):
    """Channels w-2w-4w-8w-8w down, 4w-2w-w-w up (w = width, the original's 64); class 1 of the output is foreground.

    A smaller width (16 or 32) is for CPU studies and the demo: it trains 10-15x faster on a laptop CPU and is
    recorded with every result it produces.
    """

    def __init__(self, in_channels=3, num_classes=2, width=64):
        super().__init__()
        w = width
        self.inc = double_conv(in_channels, w)
        self.down1 = Down(w, 2 * w)
        self.down2 = Down(2 * w, 4 * w)
        self.down3 = Down(4 * w, 8 * w)
        self.down4 = Down(8 * w, 8 * w)
        self.up1 = Up(16 * w, 4 * w)
        self.up2 = Up(8 * w, 2 * w)
        self.up3 = Up(4 * w, w)
        self.up4 = Up(2 * w, w)
        self.outc = nn.Conv2d(w, num_classes, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)
