"""Augmentation of (image, mask) batches for the U-Net segmenter (evaluation spec §2.4).

A reduced ADA pipeline without the strength p: each op fires per sample with its own probability. The
parameters drawn for an image batch are replayed on its one-hot mask, so both stay geometrically aligned;
colour ops are skipped for masks. Images are in [-1, 1] and are not clamped afterwards.
"""
import math

import torch
import torch.nn.functional as F

PRESETS = {
    'none': dict(),
    'color': dict(brightness=0.5, contrast=0.5, lumaflip=0.5, hue=0.5, saturation=0.5),
    'geom': dict(xflip=0.5, scale=0.5, rotate=0.5, xfrac=0.5),
}
PRESETS['gc'] = {**PRESETS['geom'], **PRESETS['color']}


def _affine2d(a, b, tx, c, d, ty):
    """Stack per-sample entries into [B, 3, 3] homogeneous 2-D matrices."""
    a, b, tx, c, d, ty = torch.broadcast_tensors(a, b, tx, c, d, ty)
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, tx, c, d, ty, zero, zero, one], dim=-1).reshape(-1, 3, 3)


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
        coin = lambda p: rand() < p  # noqa: E731
        one, zero = torch.ones(batch_size, device=device), torch.zeros(batch_size, device=device)
        params = dict(geom=None, color=None)

        if any(self.geom.values()):
            g = torch.eye(3, device=device).repeat(batch_size, 1, 1)
            if self.geom['xflip']:
                flip = torch.where(coin(self.geom['xflip']), torch.floor(rand() * 2), zero)
                g = g @ _affine2d(1 - 2 * flip, zero, zero, zero, one, zero)
            if self.geom['scale']:
                s = torch.where(coin(self.geom['scale']), torch.exp2(randn() * self.scale_std), one)
                g = g @ _affine2d(1 / s, zero, zero, zero, 1 / s, zero)
            if self.geom['rotate']:
                t = torch.where(coin(self.geom['rotate']), (rand() * 2 - 1) * math.pi * self.rotate_max, zero)
                g = g @ _affine2d(t.cos(), t.sin(), zero, -t.sin(), t.cos(), zero)
            if self.geom['xfrac']:
                # Normalised units, as in the original: 1 = half an image width.
                t = torch.where(coin(self.geom['xfrac'])[:, None], randn(2) * self.xfrac_std, 0)
                g = g @ _affine2d(one, zero, -t[:, 0], zero, one, -t[:, 1])
            params['geom'] = g

        if any(self.color.values()):
            eye = torch.eye(4, device=device)
            v = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=device) / math.sqrt(3)  # Luma axis.
            vv = torch.outer(v, v)
            c = eye.repeat(batch_size, 1, 1)
            if self.color['brightness']:
                b = torch.where(coin(self.color['brightness']), randn() * self.brightness_std, zero)
                m = eye.repeat(batch_size, 1, 1)
                m[:, :3, 3] = b[:, None]
                c = m @ c
            if self.color['contrast']:
                k = torch.where(coin(self.color['contrast']), torch.exp2(randn() * self.contrast_std), one)
                c = torch.diag_embed(torch.stack([k, k, k, one], dim=1)) @ c
            if self.color['lumaflip']:
                flip = torch.where(coin(self.color['lumaflip']), torch.floor(rand() * 2), zero)
                c = (eye - 2 * vv * flip[:, None, None]) @ c
            if self.color['hue']:
                t = torch.where(coin(self.color['hue']), (rand() * 2 - 1) * math.pi * self.hue_max, zero)
                c = self._rotate_about(v, t) @ c
            if self.color['saturation']:
                s = torch.where(coin(self.color['saturation']), torch.exp2(randn() * self.saturation_std), one)
                chroma = torch.diag(v.ceil()) - vv  # Projection onto the plane orthogonal to v, within RGB.
                c = (eye + chroma * (s[:, None, None] - 1)) @ c
            params['color'] = c
        return params

    @staticmethod
    def _rotate_about(v, theta):
        """[B, 4, 4] rotations by theta about the unit axis v (Rodrigues' formula)."""
        x, y, z = v[:3].tolist()
        cross = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=torch.float32, device=v.device)
        cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
        r = cos * torch.eye(3, device=v.device) + sin * cross + (1 - cos) * torch.outer(v[:3], v[:3])
        m = torch.eye(4, device=v.device).repeat(len(theta), 1, 1)
        m[:, :3, :3] = r
        return m

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


def augment_pair(pipe, images, labels, generator=None, num_classes=2):
    """Augment images [B, 3, H, W] and integer label maps [B, H, W] with the same draw of parameters."""
    images, params = pipe(images, generator=generator)
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(images.dtype)
    onehot, _ = pipe(onehot, params, is_mask=True)
    return images, onehot.argmax(dim=1)
