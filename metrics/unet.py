"""The U-Net segmenter of the evaluation protocol: 13,395,394 parameters, logits [B, 2, H, W].

Only the original's scale=64 topology exists here. Every original caller used it, at 64 and at 128 inputs (the
net is fully convolutional); the unused scale=128 variant wired up1 to the wrong skip and is not reproduced.
"""
from torch import nn

from torch_utils.unet_blocks import Down, Up, double_conv


class UNet(nn.Module):
    """Channels 64-128-256-512-512 down, 256-128-64-64 up; class 1 of the output is foreground."""

    def __init__(self, in_channels=3, num_classes=2):
        super().__init__()
        self.inc = double_conv(in_channels, 64)
        self.down1 = Down(64, 128)
        self.down2 = Down(128, 256)
        self.down3 = Down(256, 512)
        self.down4 = Down(512, 512)
        self.up1 = Up(512 + 512, 256)
        self.up2 = Up(256 + 256, 128)
        self.up3 = Up(128 + 128, 64)
        self.up4 = Up(64 + 64, 64)
        self.outc = nn.Conv2d(64, num_classes, 1)

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
