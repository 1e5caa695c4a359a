"""Augmentation of (image, mask) batches for the U-Net segmenter.

A reduced ADA pipeline without the strength p: each op fires per sample with its own probability. The
parameters drawn for an image batch are replayed on its one-hot mask, so both stay geometrically aligned;
colour ops are skipped for masks. Images are in [-1, 1] and are not clamped afterwards.
"""
import math

import torch
import torch.nn.functional as F

from training.augment import _rotate2d, _rotate3d, _scale2d, _scale3d, _translate2d, _translate3d  # ADA's matrices.

PRESETS = {
    'none': dict(),
    'color': dict(brightness=0.5, contrast=0.5, lumaflip=0.5, hue=0.5, saturation=0.5),
    'geom': dict(xflip=0.5, scale=0.5, rotate=0.5, xfrac=0.5),
}
PRESETS['gc'] = {**PRESETS['geom'], **PRESETS['color']}
LUMA = [1 / math.sqrt(3)] * 3


class AugmentPipe:
    """`pipe(images) -> (images, params)`; `pipe(masks, params, is_mask=True)` replays the same geometry.

    Probabilities (0 disables an op): xflip, scale, rotate, xfrac (geometric) and brightness, contrast, lumaflip,
    hue, saturation (colour). Random draws come from `generator` (any device) or the global RNG.
    """

    def __init__(self, xflip=0, scale=0, rotate=0, xfrac=0, brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,
                 scale_std=0.2, rotate_max=1, xfrac_std=0.125, brightness_std=0.2, contrast_std=0.5, hue_max=1,
                 saturation_std=1):
        self.geom = dict(xflip=xflip, scale=scale, rotate=rotate, xfrac=xfrac)
        self.color = dict(brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue, saturation=saturation)
        self.scale_std, self.rotate_max, self.xfrac_std = scale_std, rotate_max, xfrac_std
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std

    def sample_params(self, batch_size, generator=None):
        """Draw per-sample matrices: 'geom' [B, 3, 3] (output -> input coordinates) and 'color' [B, 4, 4], or None."""
        device = generator.device if generator is not None else torch.device('cpu')
        rand = lambda *shape: torch.rand(batch_size, *shape, generator=generator, device=device)  # noqa: E731
        randn = lambda *shape: torch.randn(batch_size, *shape, generator=generator, device=device)  # noqa: E731
        gate = lambda prob, value, noop: torch.where(rand() < prob, value, noop)  # noqa: E731
        params = dict(geom=None, color=None)

        if any(self.geom.values()):
            g = torch.eye(3, device=device).repeat(batch_size, 1, 1)
            if self.geom['xflip']:
                flip = gate(self.geom['xflip'], torch.floor(rand() * 2), 0)
                g = g @ _scale2d(1 - 2 * flip, 1, like=flip)
            if self.geom['scale']:
                s = gate(self.geom['scale'], torch.exp2(randn() * self.scale_std), 1)
                g = g @ _scale2d(1 / s, 1 / s, like=s)
            if self.geom['rotate']:
                g = g @ _rotate2d(gate(self.geom['rotate'], (rand() * 2 - 1) * math.pi * self.rotate_max, 0))
            if self.geom['xfrac']:
                # Normalised units, as in the original: 1 = half an image width.
                t = torch.where(rand()[:, None] < self.geom['xfrac'], randn(2) * self.xfrac_std, 0)
                g = g @ _translate2d(-t[:, 0], -t[:, 1], like=t[:, 0])
            params['geom'] = g

        if any(self.color.values()):
            eye = torch.eye(4, device=device)
            v = torch.tensor([*LUMA, 0], device=device)
            vv = torch.outer(v, v)
            c = eye.repeat(batch_size, 1, 1)
            if self.color['brightness']:
                c = _translate3d(gate(self.color['brightness'], randn() * self.brightness_std, 0)) @ c
            if self.color['contrast']:
                c = _scale3d(gate(self.color['contrast'], torch.exp2(randn() * self.contrast_std), 1)) @ c
            if self.color['lumaflip']:
                flip = gate(self.color['lumaflip'], torch.floor(rand() * 2), 0)
                c = (eye - 2 * vv * flip[:, None, None]) @ c  # Householder reflection of the luma axis.
            if self.color['hue']:
                c = _rotate3d(LUMA, gate(self.color['hue'], (rand() * 2 - 1) * math.pi * self.hue_max, 0)) @ c
            if self.color['saturation']:
                s = gate(self.color['saturation'], torch.exp2(randn() * self.saturation_std), 1)
                chroma = torch.diag(v.ceil()) - vv  # Projection onto the RGB plane orthogonal to the luma axis.
                c = (eye + chroma * (s[:, None, None] - 1)) @ c
            params['color'] = c
        return params

    def __call__(self, images, params=None, is_mask=False, generator=None):
        if params is None:
            params = self.sample_params(len(images), generator)
        g, c = params['geom'], params['color']
        if g is not None and not torch.equal(g, torch.eye(3, device=g.device).expand_as(g)):
            # Plain bilinear with zero padding (no ADA antialiasing/reflection): padded mask pixels become background.
            g = g.to(images.device, images.dtype)
            grid = F.affine_grid(g[:, :2, :], list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        if c is not None and not is_mask:
            c = c.to(images.device, images.dtype)
            b, ch, h, w = images.shape
            images = (c[:, :3, :3] @ images.reshape(b, ch, h * w) + c[:, :3, 3:]).reshape(b, ch, h, w)
        return images, params


def to_float(images_u8):
    """uint8 [0, 255] -> float [-1, 1], the original's ToTensor + Normalize(0.5, 0.5)."""
    return images_u8.float() / 127.5 - 1


def augment_pair(pipe, images, labels, generator=None, num_classes=2):
    """Augment images [B, 3, H, W] and integer label maps [B, H, W] with the same draw of parameters."""
    images, params = pipe(images, generator=generator)
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(images.dtype)
    onehot, _ = pipe(onehot, params, is_mask=True)
    return images, onehot.argmax(dim=1)


RESHAPE_GRID = 4  # Control points of the displacement field per side: a few bends per object, not noise.


def reshape_foreground(bg, fg, mask, strength, generator=None, grid=RESHAPE_GRID):
    """Re-composite layered samples with the foreground and its mask bent by one smooth random field per sample.

    bg, fg [B, 3, H, W] in [-1, 1] and the soft mask [B, 1, H, W] in [0, 1], as a generator draws them. The field is
    Gaussian noise of SD `strength` (in grid_sample's [-1, 1] coordinates, so independent of the resolution) on a
    grid x grid lattice, upsampled bicubically. The background is not moved, so the composite is again an image
    whose true mask is known: a generator that draws one shape still teaches the segmenter many
    (docs/results.md, "Re-shaped foregrounds"). Returns (image, soft mask) of the same shapes.
    """
    b, _, h, w = mask.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=mask.device), torch.linspace(-1, 1, w, device=mask.device),
                            indexing='ij')
    identity = torch.stack([xs, ys], dim=-1) * torch.tensor([(w - 1) / w, (h - 1) / h], device=mask.device)
    field = torch.randn([b, 2, grid, grid], generator=generator).to(mask.device, mask.dtype) * strength
    field = F.interpolate(field, size=(h, w), mode='bicubic', align_corners=True).permute(0, 2, 3, 1)
    where = identity + field  # Pixel centres (align_corners=False), displaced.
    fg = F.grid_sample(fg, where, mode='bilinear', padding_mode='border', align_corners=False)
    mask = F.grid_sample(mask, where, mode='bilinear', padding_mode='zeros', align_corners=False)
    return (1 - mask) * bg + mask * fg, mask
