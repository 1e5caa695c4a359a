"""ILSGAN networks: a layered StyleGAN2 generator (background + foreground/mask from one z) and a ResNet D.

Parameter and buffer names follow the original ILSGAN / StyleGAN2-ADA code exactly, so that its state_dicts and
snapshot pickles load with strict=True. Precision: blocks marked fp16 run in half precision only on CUDA; on the CPU
the same modules run in fp32.
"""
import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

SQRT_HALF = float(np.sqrt(0.5))


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _block_dtype(use_fp16, force_fp32, device):
    return torch.float16 if use_fp16 and not force_fp32 and device.type == 'cuda' else torch.float32


def _memory_format(channels_last, dtype, device):
    """channels_last where it is faster: always on the CPU (oneDNN), on CUDA for fp16 blocks that ask for it."""
    if device.type == 'cpu' or (channels_last and dtype == torch.float16):
        return torch.channels_last
    return torch.contiguous_format


def to_device(module, device):
    """Move `module` to `device`; on the CPU also store its 4-D weights channels_last, the layout its activations
    use there (see _memory_format), so that oneDNN never reorders a weight per call."""
    device = torch.device(device)
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if device.type == 'cpu' else module


def _fused_modconv(training, dtype, batch_size, device):
    """One grouped conv with per-sample weights wins for inference on CUDA; on the CPU it is 2x slower."""
    return (not training) and device.type == 'cuda' and (dtype == torch.float32 or batch_size == 1)


def _clamp_value(conv_clamp, gain, x):
    """Conv clamping guards fp16 mixed precision on CUDA; the CPU runs in fp32 and skips it (one pass less)."""
    return conv_clamp * gain if conv_clamp is not None and x.device.type == 'cuda' else None


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2's style-modulated convolution: scale input channels per sample, convolve, demodulate.

    x [N,I,H,W], weight [O,I,kh,kw], styles [N,I]. fused_modconv runs one grouped conv with per-sample weights;
    otherwise the modulation is applied to the activations (cheaper for large batches during training).
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that the fp16 products below cannot overflow; demodulation undoes the scale.
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum over (i, kh, kw) of (weight * style)^2, as one [N,I] x [I,O] product instead of building the
        # per-sample weights [N,O,I,kh,kw] (which the unfused path never needs otherwise).
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return x.add_(noise.to(x.dtype))
        return x

    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                                        groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate (weights stored at unit scale, scaled at run time)."""

    def __init__(self, in_features, out_features, bias=True, activation='linear', lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        # The gains scale the product inside addmm (alpha, beta) instead of scaling the weights on every call.
        w = self.weight.to(x.dtype).t()
        if self.bias is None:
            x = x.matmul(w) * self.weight_gain
        else:
            x = torch.addmm(self.bias.to(x.dtype).unsqueeze(0), x, w, beta=self.bias_gain, alpha=self.weight_gain)
        return x if self.activation == 'linear' else bias_act.bias_act(x, act=self.activation)


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalised learning rate, optional FIR up/downsampling, bias, activation and clamp."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation='linear', up=1, down=1,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False, trainable=True):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            self.register_buffer('bias', bias)

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = _clamp_value(self.conv_clamp, gain, x)
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(torch.nn.Module):
    """z (and optional c) -> w, broadcast to num_ws; tracks the running mean of w for truncation."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y

        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)

        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])

        if truncation_psi != 1:
            assert self.w_avg_beta is not None
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + activation."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        assert noise_mode in ('random', 'const', 'none')
        misc.assert_shape(x, [None, self.weight.shape[1], self.resolution // self.up, self.resolution // self.up])
        styles = self.affine(w)

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        clamp = _clamp_value(self.conv_clamp, gain, x)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv to output channels (no demodulation)."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=_clamp_value(self.conv_clamp, 1, x))


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: `num_conv` modulated convs (the first upsamples) and a ToRGB.

    At 4x4 the block starts from a learned constant and has num_conv - 1 convs, named from conv1 as in the original.
    """

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture='skip',
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False, fp16_channels_last=False,
                 num_conv=2, **layer_kwargs):
        assert architecture in ('orig', 'skip', 'resnet')
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        self.conv_names = []
        for idx in range(0 if in_channels else 1, num_conv):
            first = idx == 0
            layer = SynthesisLayer(in_channels if first else out_channels, out_channels, w_dim=w_dim,
                                   resolution=resolution, up=2 if first else 1, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
            setattr(self, f'conv{idx}', layer)
            self.conv_names.append(f'conv{idx}')
        self.num_conv = len(self.conv_names)
        self.num_torgb = 0
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
            self.num_torgb = 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        device = ws.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        memory_format = _memory_format(self.channels_last, dtype, device)
        if fused_modconv is None:
            fused_modconv = _fused_modconv(self.training, dtype, int(ws.shape[0]), device)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).to(memory_format=memory_format)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.architecture == 'resnet' and self.in_channels != 0:
            y = self.skip(x, gain=SQRT_HALF)
        for i, name in enumerate(self.conv_names):
            gain = SQRT_HALF if self.architecture == 'resnet' and i > 0 else 1
            x = getattr(self, name)(x, next(w_iter), fused_modconv=fused_modconv, gain=gain, **layer_kwargs)
        if self.architecture == 'resnet' and self.in_channels != 0:
            x = y.add_(x)

        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """Stack of SynthesisBlocks from 4x4 to img_resolution, with a configurable number of convs per resolution."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_fp16_res=0,
                 n_conv_per_res=2, **block_kwargs):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=(res == img_resolution),
                                   use_fp16=(res >= fp16_resolution), num_conv=n_conv_per_res, **block_kwargs)
            self.num_ws += block.num_conv
            if res == img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), **block_kwargs)
            w_idx += block.num_conv
        return img


LAYER_KEYS = ('bg', 'fg', 'mask', 'fg*mask', 'img')


class LayerTransform(torch.nn.Module):
    """The random perturbation applied to every fake that D sees: move the foreground+mask against the background.

    Knobs: bg_contrast (background contrast jitter), xint_max (integer shift, fraction of the width), and the affine
    alternative scale_max / rotate_max / xfrac_max (mutually exclusive with xint_max). eps is Uniform[-1,1]^eps_dim
    per sample, laid out as [contrast?, tx, ty, xfrac_x?, xfrac_y?, rotate?, scale?] keeping the active entries.
    """

    def __init__(self, bg_contrast=0.0, xint_max=0.125, scale_max=0.0, rotate_max=0.0, xfrac_max=0.0):
        super().__init__()
        assert not (xint_max > 0 and (scale_max > 0 or rotate_max > 0 or xfrac_max > 0)), \
            'integer blitting and the affine path are mutually exclusive'
        self.bg_contrast = float(bg_contrast)
        self.xint_max = float(xint_max)
        self.scale_max = float(scale_max)
        self.rotate_max = float(rotate_max)
        self.xfrac_max = float(xfrac_max)
        knobs = [bg_contrast, xint_max, xint_max, scale_max, rotate_max, xfrac_max, xfrac_max]
        self.eps_dim = sum(1 for k in knobs if k > 0)

    def _split_eps(self, eps):
        cols = iter(eps.unbind(dim=1))
        parts = {}
        for name, active in [('contrast', self.bg_contrast > 0), ('tx', self.xint_max > 0), ('ty', self.xint_max > 0),
                             ('fx', self.xfrac_max > 0), ('fy', self.xfrac_max > 0), ('rotate', self.rotate_max > 0),
                             ('scale', self.scale_max > 0)]:
            if active:
                parts[name] = next(cols)
        return parts

    def forward(self, layers, eps):
        misc.assert_shape(eps, [layers['bg'].shape[0], self.eps_dim])
        eps = self._split_eps(eps.to(torch.float32))
        bg, fg, mask = layers['bg'], layers['fg'], layers['mask']

        if 'contrast' in eps:
            mean = bg.mean(dim=[1, 2, 3], keepdim=True)
            lo = bg.amin(dim=[1, 2, 3], keepdim=True)
            hi = bg.amax(dim=[1, 2, 3], keepdim=True)
            factor = 1 + eps['contrast'].reshape(-1, 1, 1, 1) * self.bg_contrast
            bg = torch.minimum(torch.maximum((bg - mean) * factor + mean, lo), hi)

        fg_mask = torch.cat([fg, mask], dim=1)
        if 'tx' in eps:
            width = fg.shape[3]
            tx = torch.round(eps['tx'] * self.xint_max * width).to(torch.int64)
            ty = torch.round(eps['ty'] * self.xint_max * width).to(torch.int64)
            fg_mask = pixel_blit(fg_mask, tx, ty)
        if self.scale_max > 0 or self.rotate_max > 0 or self.xfrac_max > 0:
            fg_mask = self._affine(fg_mask, eps)
        fg, mask = fg_mask[:, :-1], fg_mask[:, -1:]
        fg_on_black = mask * fg  # 'fg*mask' as in generate_layer.
        return {'bg': bg, 'fg': fg, 'mask': mask, 'fg*mask': fg_on_black, 'img': (1 - mask) * bg + mask * fg}

    def _affine(self, x, eps):
        """Scale 2**(e*scale_max), rotate by e*rotate_max*pi and translate by e*xfrac_max of the size; zero fill."""
        n = x.shape[0]
        zeros = torch.zeros(n, device=x.device)
        scale = torch.exp2(eps.get('scale', zeros) * self.scale_max)
        angle = eps.get('rotate', zeros) * self.rotate_max * np.pi
        tx = eps.get('fx', zeros) * self.xfrac_max * 2
        ty = eps.get('fy', zeros) * self.xfrac_max * 2
        # affine_grid maps output coordinates to input ones, so build the inverse transform.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, sin, -(cos * tx + sin * ty)], dim=1),
                             torch.stack([-sin, cos, -(-sin * tx + cos * ty)], dim=1)], dim=1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def pixel_blit(x, tx, ty):
    """Shift each image by integer (tx, ty) pixels: out[n, :, y, x] = in[n, :, y - ty, x - tx], zeros outside."""
    n, _, h, w = x.shape
    iy = torch.arange(h, device=x.device)[None, :] - ty.to(x.device)[:, None]
    ix = torch.arange(w, device=x.device)[None, :] - tx.to(x.device)[:, None]
    valid = ((iy >= 0) & (iy < h))[:, :, None] & ((ix >= 0) & (ix < w))[:, None, :]
    rows = torch.arange(n, device=x.device)[:, None, None]
    out = x[rows, :, iy.clamp(0, h - 1)[:, :, None], ix.clamp(0, w - 1)[:, None, :]]  # [N,H,W,C]
    return out.permute(0, 3, 1, 2) * valid[:, None].to(x.dtype)


@persistence.persistent_class
class PerturbGenerator(torch.nn.Module):
    """Two StyleGAN2 generators driven by one z: background RGB, and foreground RGB + a mask logit.

    The image is the alpha composite img = (1 - m) * bg + m * fg with m = sigmoid(mask logit).
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None, synthesis_kwargs=None,
                 layer_t_kwargs=None):
        super().__init__()
        mapping_kwargs, synthesis_kwargs = mapping_kwargs or {}, synthesis_kwargs or {}
        layer_t_kwargs = layer_t_kwargs or {}
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis_bg = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.synthesis_fg = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels + 1, **synthesis_kwargs)
        self.num_ws_bg = self.synthesis_bg.num_ws
        self.num_ws_fg = self.synthesis_fg.num_ws
        self.mapping_bg = MappingNetwork(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=self.num_ws_bg, **mapping_kwargs)
        self.mapping_fg = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws_fg, **mapping_kwargs)
        self.Tx = LayerTransform(**layer_t_kwargs)
        self.eps_dim = self.Tx.eps_dim

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        """Both mappings from the same z; truncation lerps each towards its own w_avg."""
        kwargs = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, skip_w_avg_update=skip_w_avg_update)
        return self.mapping_bg(z, None, **kwargs), self.mapping_fg(z, self._check_c(z, c), **kwargs)

    def _check_c(self, z, c):
        if self.c_dim == 0:
            return None
        if c is None or c.shape != (z.shape[0], self.c_dim):
            labels = torch.randint(self.c_dim, [z.shape[0]], device=z.device)
            c = F.one_hot(labels, self.c_dim).to(torch.float32)
        return c

    def synthesis(self, ws_bg, ws_fg, **synthesis_kwargs):
        """The raw layers: bg RGB, fg RGB and mask in [0, 1]."""
        bg = self.synthesis_bg(ws_bg, **synthesis_kwargs)
        out = self.synthesis_fg(ws_fg, **synthesis_kwargs)
        return bg, out[:, :self.img_channels], torch.sigmoid(out[:, self.img_channels:])

    def generate_layer(self, z, c, eps, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, **synthesis_kwargs):
        """Returns (layers, perturbed layers, extra).

        Under the original's key 'fg*mask' both layer dicts hold the masked foreground on BLACK, m * fg, which is what
        the losses and the snapshot grids use; forward(return_layers=True) puts it on white instead.
        """
        ws_bg, ws_fg = self.mapping(z, c, truncation_psi, truncation_cutoff, skip_w_avg_update)
        bg, fg, mask = self.synthesis(ws_bg, ws_fg, **synthesis_kwargs)
        fg_on_black = mask * fg
        layers = {'bg': bg, 'fg': fg, 'mask': mask, 'fg*mask': fg_on_black, 'img': (1 - mask) * bg + mask * fg}
        return layers, self.Tx(layers, eps), {'ws_bg': ws_bg, 'ws_fg': ws_fg}

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, return_layers=False, **synthesis_kwargs):
        """The un-perturbed composite, or with return_layers a dict of the layers.

        There the original's key 'fg*mask' holds the masked foreground on WHITE, (1 - m) + m * fg, as the original's
        sample folders store it; generate_layer's 'fg*mask' is on black.
        """
        ws_bg, ws_fg = self.mapping(z, c, truncation_psi, truncation_cutoff)
        bg, fg, mask = self.synthesis(ws_bg, ws_fg, **synthesis_kwargs)
        img = (1 - mask) * bg + mask * fg
        if not return_layers:
            return img
        fg_on_white = (1 - mask) + mask * fg
        return {'bg': bg, 'fg': fg, 'mask': mask, 'fg*mask': fg_on_white, 'img': img}


class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the ResNet discriminator: [fromRGB,] conv, strided conv, and a 1x1 skip."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, first_layer_idx,
                 architecture='resnet', activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, freeze_layers=0):
        assert in_channels in (0, tmp_channels) and architecture in ('orig', 'skip', 'resnet')
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(list(resample_filter)))

        self.num_layers = 0

        def trainable():
            # Freeze-D: the first `freeze_layers` layers of the whole D keep their weights.
            idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, trainable=trainable(),
                                 resample_filter=resample_filter, **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, trainable=trainable(),
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        device = img.device if img is not None else x.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        memory_format = _memory_format(self.channels_last, dtype, device)
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x)
            x = self.conv1(x, gain=SQRT_HALF)
            x = y.add_(x)
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(torch.nn.Module):
    """Append the per-group standard deviation of the features as extra channels."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: minibatch-std, conv, FC, and the output logit (or a projection with cmap)."""

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture='resnet', mbstd_group_size=4,
                 mbstd_num_channels=1, activation='lrelu', conv_clamp=None):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


@persistence.persistent_class
class DiscriminatorOpen(torch.nn.Module):
    """StyleGAN2's ResNet discriminator that can also return its feature map at `opn_resolution`."""

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768, channel_max=512,
                 num_fp16_res=0, conv_clamp=None, cmap_dim=None, opn_resolution=4, block_kwargs=None, mapping_kwargs=None,
                 epilogue_kwargs=None):
        super().__init__()
        block_kwargs, mapping_kwargs, epilogue_kwargs = block_kwargs or {}, mapping_kwargs or {}, epilogue_kwargs or {}
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.opn_resolution = opn_resolution
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution),
                                       **block_kwargs, **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

    def forward(self, img, c, get_feature=False, **block_kwargs):
        x = None
        feature = None
        for res in self.block_resolutions:
            if res == self.opn_resolution:
                feature = [x, img]
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        if self.opn_resolution == 4:
            feature = [x, img]
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        logits = self.b4(x, img, cmap)
        return (logits, feature) if get_feature else logits
