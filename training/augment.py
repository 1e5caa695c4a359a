"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training GANs with Limited Data").

AugmentPipe applies, in order: pixel blitting, general geometric transforms, colour transforms, image-space
filtering and image-space corruptions. Every augmentation is drawn per sample with probability
(its multiplier × p), where p is the adaptive strength. AdaController steers p from the sign of D on reals.

Differences from StyleGAN2-ADA (same maths and buffers otherwise):
- A sample for which no augmentation of a stage was drawn leaves that stage bit-exact, so p = 0 is an exact
  identity (the original still ran the near-identity resampling and colour matrix on it).
- The image-filter band gains are drawn in one batched call instead of band by band (same distribution).
"""
import numpy as np
import torch

from torch_utils import misc, persistence
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix, upfirdn2d

# Low-pass decomposition filters of the Symlet wavelets used by ADA (same values as PyWavelets).
_SYM2 = [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025]
_SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
         0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
         -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
augpipe_specs = {
    'blit': dict(_BLIT),
    'geom': dict(_GEOM),
    'color': dict(_COLOR),
    'filter': dict(imgfilter=1),
    'noise': dict(noise=1),
    'cutout': dict(cutout=1),
    'bg': dict(**_BLIT, **_GEOM),
    'bgc': dict(**_BLIT, **_GEOM, **_COLOR),
    'bgcf': dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1),
    'bgcfn': dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1),
    'bgcfnc': dict(**_BLIT, **_GEOM, **_COLOR, imgfilter=1, noise=1, cutout=1),
}

# ---------------------------------------------------------------------------------------------------------------
# Batched homogeneous matrices. Entries are python numbers or [batch] tensors; the result is [batch, rows, cols].


def _matrix(*rows, like):
    entries = [e if torch.is_tensor(e) else torch.full_like(like, e) for row in rows for e in row]
    return torch.stack(entries, dim=-1).reshape(like.shape + (len(rows), len(rows[0])))


def _translate2d(tx, ty, like):
    return _matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], like=like)


def _scale2d(sx, sy, like):
    return _matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], like=like)


def _rotate2d(theta):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([c, -s, 0], [s, c, 0], [0, 0, 1], like=theta)


def _translate3d(t):
    return _matrix([1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1], like=t)


def _scale3d(s):
    return _matrix([s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1], like=s)


def _rotate3d(axis, theta):
    """Rodrigues rotation by theta about the unit vector axis (python floats)."""
    x, y, z = axis
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    return _matrix(
        [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, 0],
        [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, 0],
        [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, 0],
        [0, 0, 0, 1], like=theta)


def _constant_matrix(rows, device):
    return torch.as_tensor(np.asarray(rows, dtype=np.float32), device=device)


def _is_identity(m):
    """[batch] bool: which matrices are exactly the identity."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    return (m == eye).flatten(1).all(dim=1)


def _keep_where(identity, original, augmented):
    """Samples that drew no augmentation keep their exact input (the resampling paths are only near-identity)."""
    return torch.where(identity.reshape(-1, 1, 1, 1), original, augmented)


def _sym2_filter_bank(num_bands=4):
    """[num_bands, taps] zero-phase filters splitting the spectrum into octave bands; the rows sum to a delta.

    Built from the sym2 wavelet's half-band pair: each level splits the current low band with
    H(z)H(1/z)/2 (low) and H(-z)H(-1/z)/2 (high) and spreads the coarser bands by zero insertion.
    """
    lo = np.asarray(_SYM2)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.eye(num_bands, 1)
    for band in range(1, num_bands):
        spread = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        spread[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in spread])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start:start + hi2.size] += hi2
    return bank

def _integer(shape, k, dp, device):
    """Uniform on {0, ..., k-1}, or the dp-quantile."""
    u = torch.rand(shape, device=device) if dp is None else dp.expand(shape)
    return torch.floor(u * k)


def _uniform(shape, half_range, dp, device):
    """U(-half_range, half_range), or the dp-quantile."""
    u = torch.rand(shape, device=device) if dp is None else dp.expand(shape)
    return (u * 2 - 1) * half_range


def _normal(shape, std, dp, device, half=False):
    """N(0, std^2) (|N| if half), or the dp-quantile."""
    if dp is None:
        z = torch.randn(shape, device=device)
        return (z.abs() if half else z) * std
    return torch.erfinv(dp if half else dp * 2 - 1).expand(shape) * std


def _lognormal(shape, std, dp, device):
    """2^N(0, std^2), or the dp-quantile."""
    return torch.exp2(_normal(shape, std, dp, device))


# ---------------------------------------------------------------------------------------------------------------


@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """ADA pipeline; every augmentation is off by default, enable it with a probability multiplier of 1."""

    def __init__(self, xflip=0, rotate90=0, xint=0, xint_max=0.125,  # pixel blitting
                 scale=0, rotate=0, aniso=0, xfrac=0,  # general geometric transforms
                 scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125,
                 brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0,  # colour transforms
                 brightness_std=0.2, contrast_std=0.5, hue_max=1, saturation_std=1,
                 imgfilter=0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1,  # image-space filtering
                 noise=0, cutout=0, noise_std=0.1, cutout_size=0.5):  # image-space corruptions
        super().__init__()
        self.register_buffer('p', torch.ones([]))  # Adaptive strength: scales every probability below.

        # Pixel blitting: probability multipliers; xint_max is relative to the image size.
        self.xflip, self.rotate90, self.xint = float(xflip), float(rotate90), float(xint)
        self.xint_max = float(xint_max)

        # General geometric transforms. *_std are log2 std devs (xfrac_std: std of the shift / image size);
        # rotate_max: 1 = full circle.
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max = float(scale_std), float(rotate_max)
        self.aniso_std, self.xfrac_std = float(aniso_std), float(xfrac_std)

        # Colour transforms. contrast_std and saturation_std are log2 std devs; hue_max: 1 = full circle.
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = float(brightness_std), float(contrast_std)
        self.hue_max, self.saturation_std = float(hue_max), float(saturation_std)

        # Image-space filtering: per-band multipliers and the log2 std dev of a band's gain.
        self.imgfilter = float(imgfilter)
        self.imgfilter_bands = list(imgfilter_bands)
        self.imgfilter_std = float(imgfilter_std)

        # Image-space corruptions.
        self.noise, self.cutout = float(noise), float(cutout)
        self.noise_std, self.cutout_size = float(noise_std), float(cutout_size)

        # Orthogonal low-pass for the 2x oversampled geometric transforms; octave filter bank for imgfilter.
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(_SYM6))
        self.register_buffer('Hz_fbank', torch.as_tensor(_sym2_filter_bank(), dtype=torch.float32))

    def forward(self, images, debug_percentile=None):
        """images [N, C, H, W] (C = 1 or 3 when colour transforms are on). debug_percentile in [0, 1) replaces
        every random draw by that quantile (for visualising the augmentations)."""
        assert isinstance(images, torch.Tensor) and images.ndim == 4
        dp = debug_percentile
        if dp is not None:
            dp = torch.as_tensor(dp, dtype=torch.float32, device=images.device)
        images = self._geometric(images, dp)
        images = self._color(images, dp)
        images = self._imgfilter(images, dp)
        return self._corruptions(images, dp)

    # -- Random draws ---------------------------------------------------------------------------------------------
    # Each parameter is drawn per sample, then gated: kept with probability (multiplier * p), else the no-op
    # value. With debug_percentile (dp) the draw is replaced by its dp-quantile and the gate is skipped.

    def _gate(self, value, prob, noop, dp):
        if dp is not None:
            return value
        hit = torch.rand(value.shape[:1] + (1,) * (value.ndim - 1), device=value.device) < prob
        return torch.where(hit, value, torch.full_like(value, noop))

    def _geometric_matrix(self, n, width, height, dp, device):
        """[n, 3, 3] inverse transform (output pixel -> input pixel, origin at the image centre), or None."""
        if not any([self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac]):
            return None
        one = torch.ones([n], device=device)
        G_inv = torch.eye(3, device=device).expand(n, 3, 3)

        if self.xflip > 0:
            i = self._gate(_integer([n], 2, dp, device), self.xflip * self.p, 0, dp)
            G_inv = G_inv @ _scale2d(1 - 2 * i, 1, like=one)

        if self.rotate90 > 0:
            i = self._gate(_integer([n], 4, dp, device), self.rotate90 * self.p, 0, dp)
            G_inv = G_inv @ _rotate2d(np.pi / 2 * i)

        if self.xint > 0:
            t = self._gate(_uniform([n, 2], self.xint_max, dp, device), self.xint * self.p, 0, dp)
            G_inv = G_inv @ _translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height), like=one)

        if self.scale > 0:
            s = self._gate(_lognormal([n], self.scale_std, dp, device), self.scale * self.p, 1, dp)
            G_inv = G_inv @ _scale2d(1 / s, 1 / s, like=one)

        # Rotation is split around the anisotropic scaling; each half fires with p_rot so that
        # P(pre or post) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = self._gate(_uniform([n], np.pi * self.rotate_max, dp, device), p_rot, 0, dp)
            G_inv = G_inv @ _rotate2d(theta)

        if self.aniso > 0:
            s = self._gate(_lognormal([n], self.aniso_std, dp, device), self.aniso * self.p, 1, dp)
            G_inv = G_inv @ _scale2d(1 / s, s, like=one)

        if self.rotate > 0:
            if dp is None:
                theta = self._gate(_uniform([n], np.pi * self.rotate_max, None, device), p_rot, 0, None)
            else:
                theta = torch.zeros([n], device=device)  # The pre-rotation alone shows the debug angle.
            G_inv = G_inv @ _rotate2d(theta)

        if self.xfrac > 0:
            t = self._gate(_normal([n, 2], self.xfrac_std, dp, device), self.xfrac * self.p, 0, dp)
            G_inv = G_inv @ _translate2d(-t[:, 0] * width, -t[:, 1] * height, like=one)
        return G_inv

    def _geometric(self, images, dp):
        n, _, height, width = images.shape
        G_inv = self._geometric_matrix(n, width, height, dp, images.device)
        if G_inv is None:
            return images
        return _keep_where(_is_identity(G_inv), images, self._warp(images, G_inv))

    def _warp(self, images, G_inv):
        """Resample every image through its transform: reflect-pad, 2x upsample with the orthogonal sym6
        low-pass, bilinear sampling, then filter and decimate back (alias-free up to the filter quality)."""
        n, c, height, width = images.shape
        device = images.device
        hz_pad = self.Hz_geom.shape[0] // 4  # Filter reach in input pixels.

        # Reflect-pad just enough for every output corner (plus the filter reach) to sample real content.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = _constant_matrix([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1, 1, 1, 1]], device)
        reach = (G_inv @ corners)[:, :2, :].transpose(0, 1).flatten(1)  # [xy, n * corner]
        margin = torch.cat([-reach, reach]).amax(dim=1)  # [left, top, right, bottom] in centred coords
        margin = margin + misc.constant([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, device=device)
        margin = margin.clamp(min=0).minimum(misc.constant([width - 1, height - 1] * 2, device=device))
        mx0, my0, mx1, my1 = margin.ceil().to(torch.int64).tolist()  # The pipe's one host-device sync.
        images = torch.nn.functional.pad(images, [mx0, mx1, my0, my1], mode='reflect')
        images = upfirdn2d.upsample2d(images, self.Hz_geom, up=2)

        # Sample a 2 x (size + 2 * hz_pad) output so the decimation filter has support. G_inv is wrapped into
        # the normalised [-1, 1] coordinates (align_corners=False) of that output (right factor) and of the
        # padded, upsampled input (left factor, which also undoes the padding's shift of the centre). The
        # -0.5 half-sample offset pairs with flip_filter=True below so that the identity maps exactly.
        out_h, out_w = (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2
        in_h, in_w = images.shape[2], images.shape[3]
        to_input = _constant_matrix([[4 / in_w, 0, (mx0 - mx1 - 0.5) * 2 / in_w],
                                     [0, 4 / in_h, (my0 - my1 - 0.5) * 2 / in_h],
                                     [0, 0, 1]], device)
        from_output = _constant_matrix([[out_w / 4, 0, 0.25], [0, out_h / 4, 0.25], [0, 0, 1]], device)
        theta = (to_input @ G_inv @ from_output)[:, :2, :].to(images.dtype)
        grid = torch.nn.functional.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)
        return upfirdn2d.downsample2d(images, self.Hz_geom, down=2, padding=-hz_pad * 2, flip_filter=True)

    # -- Colour ---------------------------------------------------------------------------------------------------

    def _color_matrix(self, n, num_channels, dp, device):
        """[n, 4, 4] homogeneous RGB transform, or None."""
        if not any([self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation]):
            return None
        eye = torch.eye(4, device=device)
        C = eye.expand(n, 4, 4)
        luma = np.asarray([1, 1, 1]) / np.sqrt(3)
        v = misc.constant(np.append(luma, 0), device=device)
        vvT = torch.outer(v, v)

        if self.brightness > 0:
            b = self._gate(_normal([n], self.brightness_std, dp, device), self.brightness * self.p, 0, dp)
            C = _translate3d(b) @ C

        if self.contrast > 0:
            c = self._gate(_lognormal([n], self.contrast_std, dp, device), self.contrast * self.p, 1, dp)
            C = _scale3d(c) @ C

        if self.lumaflip > 0:
            i = self._gate(_integer([n, 1, 1], 2, dp, device), self.lumaflip * self.p, 0, dp)
            C = (eye - 2 * vvT * i) @ C  # Householder reflection of the luma axis.

        if self.hue > 0 and num_channels > 1:
            theta = self._gate(_uniform([n], np.pi * self.hue_max, dp, device), self.hue * self.p, 0, dp)
            C = _rotate3d(luma.tolist(), theta) @ C  # Rotate the chroma plane about the luma axis.

        if self.saturation > 0 and num_channels > 1:
            s = self._gate(_lognormal([n, 1, 1], self.saturation_std, dp, device), self.saturation * self.p, 1, dp)
            C = (eye + (eye - vvT) * (s - 1)) @ C  # vvT + (I - vvT) * s, exactly I at s = 1.
        return C

    def _color(self, images, dp):
        n, num_channels, height, width = images.shape
        C = self._color_matrix(n, num_channels, dp, images.device)
        if C is None:
            return images
        M = C.to(images.dtype)
        flat = images.reshape(n, num_channels, height * width)
        if num_channels == 3:
            out = M[:, :3, :3] @ flat + M[:, :3, 3:]
        elif num_channels == 1:
            M = M[:, :3, :].mean(dim=1, keepdim=True)  # Grey in, grey out: average the RGB rows.
            out = flat * M[:, :, :3].sum(dim=2, keepdim=True) + M[:, :, 3:]
        else:
            raise ValueError('Colour augmentations need RGB (3 channels) or L (1 channel) images')
        return _keep_where(_is_identity(C), images, out.reshape(images.shape))

    # -- Image-space filtering ------------------------------------------------------------------------------------

    def _band_gains(self, n, dp, device):
        """[n, bands] gains: each band is boosted by 2^N(0, std^2) with probability imgfilter * p * band_mult and
        the result renormalised after each boost so that the expected (1/f) power stays 1."""
        num_bands = self.Hz_fbank.shape[0]
        assert len(self.imgfilter_bands) == num_bands
        band_mult = misc.constant(self.imgfilter_bands, device=device)
        t = _lognormal([n, num_bands], self.imgfilter_std, dp, device)
        if dp is None:
            hit = torch.rand([n, num_bands], device=device) < self.imgfilter * self.p * band_mult
        else:
            hit = (band_mult > 0).expand(n, num_bands)
        t = torch.where(hit, t, 1.0)
        # Boosting band i alone costs a power renormalisation sqrt(sum_j w_j t_j^2) with t_j = 1 for j != i.
        power = misc.constant(np.asarray([10, 1, 1, 1]) / 13, device=device)
        single = torch.eye(num_bands, dtype=torch.bool, device=device)
        boosted = torch.where(single, t[:, None, :], 1.0)  # [n, boost i, band j]
        norms = (power * boosted.square()).sum(dim=2).sqrt()  # [n, boost i]
        return t / norms.prod(dim=1, keepdim=True), (t == 1).all(dim=1)

    def _imgfilter(self, images, dp):
        if self.imgfilter <= 0:
            return images
        n, c, height, width = images.shape
        gains, untouched = self._band_gains(n, dp, images.device)
        taps = (gains @ self.Hz_fbank).to(images.dtype)  # [n, taps]: one zero-phase filter per sample
        taps = taps[:, None, :].expand(n, c, -1).reshape(n * c, 1, -1)
        pad = self.Hz_fbank.shape[1] // 2
        x = torch.nn.functional.pad(images.reshape(1, n * c, height, width), [pad] * 4, mode='reflect')
        x = conv2d_gradfix.conv2d(x, taps[:, :, None, :], groups=n * c)  # Separable: rows, then columns.
        x = conv2d_gradfix.conv2d(x, taps[:, :, :, None], groups=n * c)
        return _keep_where(untouched, images, x.reshape(images.shape))

    # -- Image-space corruptions ----------------------------------------------------------------------------------

    def _corruptions(self, images, dp):
        n, c, height, width = images.shape
        device = images.device
        if self.noise > 0:
            sigma = self._gate(_normal([n, 1, 1, 1], self.noise_std, dp, device, half=True), self.noise * self.p, 0, dp)
            images = images + torch.randn([n, c, height, width], device=device) * sigma

        if self.cutout > 0:
            size = self._gate(torch.full([n, 2, 1, 1], self.cutout_size, device=device), self.cutout * self.p, 0, dp)
            center = torch.rand([n, 2, 1, 1], device=device) if dp is None else dp.expand(n, 2, 1, 1)
            # Zero an axis-aligned rectangle (size relative to the image) around the centre; size 0 keeps all.
            x = (torch.arange(width, device=device) + 0.5) / width
            y = (torch.arange(height, device=device)[:, None] + 0.5) / height
            outside = ((x - center[:, 0]).abs() >= size[:, 0] / 2) | ((y - center[:, 1]).abs() >= size[:, 1] / 2)
            images = images * outside[:, None].to(images.dtype)
        return images

# ---------------------------------------------------------------------------------------------------------------


class AdaController:
    """Adjusts augment_pipe.p so that E[sign(D(real))] tracks `target` (ADA's overfitting heuristic r_t).

    Call accumulate(real_logits) for every D pass on reals whose signs count (sg: the Dmain phase), and
    step(batch_idx) once per iteration afterwards. Every `interval` iterations (batch_idx % interval == 0, as
    in sg) p moves by sign(r_t - target) * batch_size * interval / (kimg * 1000) and is clamped at 0, so p can
    go from 0 to 1 in `kimg` thousand images. Everything stays on the device: no host sync.
    batch_size is the global batch (all ranks). Under torch.distributed the accumulators are summed over ranks;
    every rank must then call step() in lockstep.
    """

    def __init__(self, augment_pipe, batch_size, target=0.6, interval=4, kimg=500):
        self.augment_pipe = augment_pipe
        self.target = float(target)
        self.interval = int(interval)
        self.adjust_step = batch_size * interval / (kimg * 1000)
        self._sign_sum = None  # Device scalar, created on the first accumulate().
        self._count = 0  # Number of logits accumulated on this rank (known on the host).

    def accumulate(self, real_logits):
        signs = real_logits.detach().sign().sum(dtype=torch.float32)
        self._sign_sum = signs if self._sign_sum is None else self._sign_sum + signs
        self._count += real_logits.numel()

    def step(self, batch_idx):
        """Update p if this iteration ends an interval; returns whether it did."""
        if batch_idx % self.interval != 0:
            return False
        p = self.augment_pipe.p
        stats = torch.stack([self._sum_on(p.device), torch.tensor(float(self._count), device=p.device)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        sign_sum, count = stats.unbind()
        adjust = torch.sign(sign_sum / count.clamp(min=1) - self.target) * self.adjust_step
        adjust = torch.where(count > 0, adjust, 0.0)  # Nothing seen (e.g. no D phase ran): keep p.
        p.copy_((p + adjust).clamp(min=0))
        self._sign_sum, self._count = None, 0
        return True

    def _sum_on(self, device):
        if self._sign_sum is None:
            return torch.zeros([], device=device)
        return self._sign_sum.to(device)

    def state_dict(self):
        sign_sum = None if self._sign_sum is None else self._sign_sum.detach().cpu().clone()
        return dict(sign_sum=sign_sum, count=self._count)

    def load_state_dict(self, state):
        device = self.augment_pipe.p.device
        self._sign_sum = None if state['sign_sum'] is None else state['sign_sum'].to(device)
        self._count = int(state['count'])
