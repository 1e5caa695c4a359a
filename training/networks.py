"""ILSGAN networks: a layered StyleGAN2 generator (background + foreground/mask from one z) and a ResNet D.

Parameter and buffer names follow the original ILSGAN / StyleGAN2-ADA code exactly, so that its state_dicts and
snapshot pickles load with strict=True. Precision: blocks marked fp16 run in half precision only on CUDA; on the CPU
the same modules run in fp32.
"""
import functools

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

SQRT_HALF = float(np.sqrt(0.5))
LAYER_KEYS = ('bg', 'fg', 'mask', 'fg*mask', 'img')


# ---------------------------------------------------------------------------------------------------------------
# Helpers shared by every layer type.

def _keep(module, **settings):
    """Record the constructor settings that forward() and callers read back as attributes."""
    for name, value in settings.items():
        setattr(module, name, value)


def _init_weight(shape, lr_multiplier=1, channels_last=False):
    """Equalised learning rate: weights are drawn N(0, 1) / lr_multiplier and scaled by their gain at run time."""
    weight = torch.randn(shape) / lr_multiplier
    return weight.to(memory_format=torch.channels_last) if channels_last else weight


def _weight_gain(fan_in, lr_multiplier=1):
    return lr_multiplier / np.sqrt(fan_in)


def _attach(module, name, tensor, trainable=True):
    """A trainable tensor becomes a Parameter; a frozen one (Freeze-D) a buffer, which no optimizer sees."""
    if trainable and tensor is not None:
        setattr(module, name, torch.nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def _fir(taps):
    return upfirdn2d.setup_filter(list(taps))


def _act_gain(activation):
    return bias_act.activation_funcs[activation].def_gain


def _clamp_value(conv_clamp, gain, x):
    """Conv clamping guards fp16 mixed precision on CUDA; the CPU runs in fp32 and skips it (one pass less)."""
    return conv_clamp * gain if conv_clamp is not None and x.device.type == 'cuda' else None


def _bias_act(x, bias, activation, act_gain, conv_clamp, gain=1):
    """The epilogue of every conv layer: bias, activation, gain, and the (CUDA-only) clamp."""
    bias = bias.to(x.dtype) if bias is not None else None
    return bias_act.bias_act(x, bias, act=activation, gain=act_gain * gain, clamp=_clamp_value(conv_clamp, gain, x))


def _channel_table(resolutions, channel_base, channel_max):
    """Feature maps per resolution, shared by G and D: channel_base / res, capped at channel_max."""
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def _first_fp16_resolution(resolution_log2, num_fp16_res):
    """The `num_fp16_res` highest resolutions run in fp16, but never 4x4."""
    return max(2 ** (resolution_log2 + 1 - num_fp16_res), 8)


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


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------------------------
# Modulated convolution.

def _prescale_for_fp16(weight, styles):
    """Bring weight (per output channel) and styles to unit max magnitude, so that the fp16 products cannot
    overflow; demodulation divides the scale out again."""
    fan_in = weight[0].numel()
    weight = weight * (1 / np.sqrt(fan_in) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
    return weight, styles / styles.norm(float('inf'), dim=1, keepdim=True)


def _modulate_activations(x, weight, styles, dcoefs, noise, conv):
    """Scale the input channels by the styles and the output channels by the demodulation: one plain conv."""
    n = x.shape[0]
    x = conv(x * styles.to(x.dtype).reshape(n, -1, 1, 1), weight.to(x.dtype))
    if dcoefs is None:
        return x if noise is None else x.add_(noise.to(x.dtype))
    dcoefs = dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
    return x * dcoefs if noise is None else fma.fma(x, dcoefs, noise.to(x.dtype))


def _modulate_weights(x, weight, styles, dcoefs, noise, conv):
    """Fold styles (and demodulation) into one weight per sample and run the batch as a grouped conv."""
    n, in_channels = styles.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if dcoefs is not None:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    w = w.reshape(-1, in_channels, *weight.shape[2:]).to(x.dtype)
    y = conv(x.reshape(1, -1, *x.shape[2:]), w, groups=n)
    y = y.reshape(n, -1, *y.shape[2:])
    return y if noise is None else y.add_(noise)


def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2's style-modulated convolution: scale input channels per sample, convolve, demodulate.

    x [N,I,H,W], weight [O,I,kh,kw], styles [N,I]. fused_modconv runs one grouped conv with per-sample weights;
    otherwise the modulation is applied to the activations (cheaper for large batches during training).
    """
    misc.assert_shape(x, [styles.shape[0], weight.shape[1], None, None])
    misc.assert_shape(styles, [x.shape[0], weight.shape[1]])
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _prescale_for_fp16(weight, styles)
    dcoefs = None
    if demodulate:
        # 1 / |w_o * s| over (i, kh, kw), as one [N,I] x [I,O] product instead of building the per-sample weights.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    conv = functools.partial(conv2d_resample.conv2d_resample, f=resample_filter, up=up, down=down, padding=padding,
                             flip_weight=flip_weight)
    run = _modulate_weights if fused_modconv else _modulate_activations
    return run(x, weight, styles, dcoefs, noise, conv)


# ---------------------------------------------------------------------------------------------------------------
# Layers.

class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate (weights stored at unit scale, scaled at run time)."""

    def __init__(self, in_features, out_features, bias=True, activation='linear', lr_multiplier=1, bias_init=0):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(_init_weight([out_features, in_features], lr_multiplier))
        _attach(self, 'bias', torch.full([out_features], float(bias_init)) if bias else None)
        self.weight_gain = _weight_gain(in_features, lr_multiplier)
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
        _keep(self, activation=activation, up=up, down=down, conv_clamp=conv_clamp, padding=kernel_size // 2)
        self.register_buffer('resample_filter', _fir(resample_filter))
        self.weight_gain = _weight_gain(in_channels * kernel_size ** 2)
        self.act_gain = _act_gain(activation)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        _attach(self, 'weight', _init_weight(shape, channels_last=channels_last), trainable)
        _attach(self, 'bias', torch.zeros([out_channels]) if bias else None, trainable)

    def forward(self, x, gain=1):
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample.conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down,
                                            padding=self.padding, flip_weight=(self.up == 1))
        return _bias_act(x, self.bias, self.activation, self.act_gain, self.conv_clamp, gain)


def _mapping_widths(z_dim, c_dim, w_dim, num_layers, embed_features, layer_features):
    """(width of the embedded label, [input, hidden..., w] widths of the mapping MLP)."""
    embed = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
    hidden = w_dim if layer_features is None else layer_features
    return embed, [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]


class MappingNetwork(torch.nn.Module):
    """z (and optional c) -> w, broadcast to num_ws; tracks the running mean of w for truncation."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        _keep(self, z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=num_layers, w_avg_beta=w_avg_beta)
        embed, widths = _mapping_widths(z_dim, c_dim, w_dim, num_layers, embed_features, layer_features)
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for idx, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            setattr(self, f'fc{idx}', FullyConnectedLayer(fan_in, fan_out, activation=activation, lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def _inputs(self, z, c):
        """z and the embedded c, each normalised to unit second moment, side by side."""
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def _truncate(self, w, psi, cutoff):
        """Pull w towards its running mean by (1 - psi): all of it, or only its first `cutoff` broadcast copies."""
        assert self.w_avg_beta is not None, 'truncation needs the tracked w_avg'
        if self.num_ws is None or cutoff is None:
            return self.w_avg.lerp(w, psi)
        return torch.cat([self.w_avg.lerp(w[:, :cutoff], psi), w[:, cutoff:]], dim=1)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        w = self._inputs(z, c)
        for idx in range(self.num_layers):
            w = getattr(self, f'fc{idx}')(w)
        if self.training and self.w_avg_beta is not None and not skip_w_avg_update:
            self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            w = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        return w if truncation_psi == 1 else self._truncate(w, truncation_psi, truncation_cutoff)


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + activation."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False):
        super().__init__()
        _keep(self, resolution=resolution, up=up, use_noise=use_noise, activation=activation, conv_clamp=conv_clamp,
              padding=kernel_size // 2, act_gain=_act_gain(activation))
        self.register_buffer('resample_filter', _fir(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        _attach(self, 'weight', _init_weight(shape, channels_last=channels_last))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        _attach(self, 'bias', torch.zeros([out_channels]))

    def _noise(self, x, noise_mode):
        """Per-pixel noise times the learned strength: fresh per call ('random'), the stored map ('const'), or none."""
        assert noise_mode in ('random', 'const', 'none')
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            return self.noise_const * self.noise_strength
        return torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        in_res = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_res, in_res])
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, noise=self._noise(x, noise_mode), up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        return _bias_act(x, self.bias, self.activation, self.act_gain, self.conv_clamp, gain)


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv to output channels (no demodulation)."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        _keep(self, conv_clamp=conv_clamp, weight_gain=_weight_gain(in_channels * kernel_size ** 2))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        _attach(self, 'weight', _init_weight(shape, channels_last=channels_last))
        _attach(self, 'bias', torch.zeros([out_channels]))

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return _bias_act(x, self.bias, 'linear', 1, self.conv_clamp)


# ---------------------------------------------------------------------------------------------------------------
# Generator.

class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: `num_conv` modulated convs (the first upsamples) and a ToRGB.

    At 4x4 the block starts from a learned constant and has num_conv - 1 convs, named from conv1 as in the original.
    """

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture='skip',
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False, fp16_channels_last=False,
                 num_conv=2, **layer_kwargs):
        assert architecture in ('orig', 'skip', 'resnet')
        super().__init__()
        _keep(self, in_channels=in_channels, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
              is_last=is_last, architecture=architecture, use_fp16=use_fp16,
              channels_last=use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', _fir(resample_filter))
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        layer_kwargs = dict(layer_kwargs, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp,
                            channels_last=self.channels_last)
        self.conv_names = []
        for idx in range(0 if in_channels else 1, num_conv):
            # conv0 is the upsampling conv from the previous resolution; the others keep the resolution.
            upsampling = idx == 0
            resampling = dict(up=2, resample_filter=resample_filter) if upsampling else {}
            layer = SynthesisLayer(in_channels if upsampling else out_channels, out_channels, **resampling, **layer_kwargs)
            setattr(self, f'conv{idx}', layer)
            self.conv_names.append(f'conv{idx}')
        self.num_conv = len(self.conv_names)
        self.num_torgb = int(is_last or architecture == 'skip')
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
        if architecture == 'resnet' and in_channels:
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, up=2, resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        device = ws.device
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        memory_format = _memory_format(self.channels_last, dtype, device)
        if fused_modconv is None:
            fused_modconv = _fused_modconv(self.training, dtype, int(ws.shape[0]), device)
        w_per_layer = ws.unbind(dim=1)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        x = x.to(dtype=dtype, memory_format=memory_format)
        resnet = self.architecture == 'resnet' and self.in_channels != 0
        shortcut = self.skip(x, gain=SQRT_HALF) if resnet else None
        for i, name in enumerate(self.conv_names):
            gain = SQRT_HALF if resnet and i > 0 else 1
            x = getattr(self, name)(x, w_per_layer[i], fused_modconv=fused_modconv, gain=gain, **layer_kwargs)
        if resnet:
            x = shortcut.add_(x)

        if img is not None:
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.num_torgb:
            rgb = self.torgb(x, w_per_layer[self.num_conv], fused_modconv=fused_modconv)
            rgb = rgb.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = rgb if img is None else img.add_(rgb)
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """Stack of SynthesisBlocks from 4x4 to img_resolution, with a configurable number of convs per resolution."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, num_fp16_res=0,
                 n_conv_per_res=2, **block_kwargs):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0
        super().__init__()
        log2 = int(np.log2(img_resolution))
        resolutions = [2 ** i for i in range(2, log2 + 1)]
        _keep(self, w_dim=w_dim, img_resolution=img_resolution, img_resolution_log2=log2, img_channels=img_channels,
              block_resolutions=resolutions)
        channels = _channel_table(resolutions, channel_base, channel_max)
        fp16_from = _first_fp16_resolution(log2, num_fp16_res)
        self.num_ws = 0
        for res in resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                                   resolution=res, img_channels=img_channels, is_last=(res == img_resolution),
                                   use_fp16=(res >= fp16_from), num_conv=n_conv_per_res, **block_kwargs)
            setattr(self, f'b{res}', block)
            # Consecutive blocks share one w at their seam: each block's ToRGB reuses the next block's first w.
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        start = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            x, img = block(x, img, ws.narrow(1, start, block.num_conv + block.num_torgb), **block_kwargs)
            start += block.num_conv
        return img


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


def set_mask_logit_bias(G, value):
    """Set the constant that the foreground network's last toRGB layer adds to the mask logit (0 at construction).

    A negative value starts training with a mostly empty foreground layer (the `tiny` preset uses -2); at 0 the
    initial masks cover about 70 % of the image. Which layer ends up holding the object is decided in the first
    kimg, and small networks started from the mostly full mask often settle on the inverted decomposition.
    """
    last_block = getattr(G.synthesis_fg, f'b{G.img_resolution}')
    with torch.no_grad():
        last_block.torgb.bias[G.img_channels] = float(value)


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
        _keep(self, z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels)
        # The foreground network draws one channel more than the image: the mask logit.
        for layer, channels in (('bg', img_channels), ('fg', img_channels + 1)):
            net = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=channels, **synthesis_kwargs)
            setattr(self, f'synthesis_{layer}', net)
            setattr(self, f'num_ws_{layer}', net.num_ws)
        # Only the foreground is conditioned on the class label.
        for layer, layer_c_dim in (('bg', 0), ('fg', c_dim)):
            num_ws = getattr(self, f'num_ws_{layer}')
            setattr(self, f'mapping_{layer}', MappingNetwork(z_dim=z_dim, c_dim=layer_c_dim, w_dim=w_dim, num_ws=num_ws,
                                                            **mapping_kwargs))
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


# ---------------------------------------------------------------------------------------------------------------
# Discriminator.

class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the ResNet discriminator: [fromRGB,] conv, strided conv, and a 1x1 skip."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, first_layer_idx,
                 architecture='resnet', activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, freeze_layers=0):
        assert in_channels in (0, tmp_channels) and architecture in ('orig', 'skip', 'resnet')
        super().__init__()
        _keep(self, in_channels=in_channels, resolution=resolution, img_channels=img_channels,
              first_layer_idx=first_layer_idx, architecture=architecture, use_fp16=use_fp16,
              channels_last=use_fp16 and fp16_channels_last, num_layers=0)
        self.register_buffer('resample_filter', _fir(resample_filter))

        # (name, in, out, kernel, down, bias, activation) of each layer of this block, in creation order; the skip
        # has neither bias nor clamp.
        layers = []
        if in_channels == 0 or architecture == 'skip':
            layers.append(('fromrgb', img_channels, tmp_channels, 1, 1, True, activation))
        layers.append(('conv0', tmp_channels, tmp_channels, 3, 1, True, activation))
        layers.append(('conv1', tmp_channels, out_channels, 3, 2, True, activation))
        if architecture == 'resnet':
            layers.append(('skip', tmp_channels, out_channels, 1, 2, False, 'linear'))
        for name, fan_in, fan_out, kernel, down, bias, act in layers:
            # Freeze-D: the first `freeze_layers` layers of the whole D keep their initial weights.
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            resampling = dict(down=2, resample_filter=resample_filter) if down > 1 else {}
            setattr(self, name, Conv2dLayer(fan_in, fan_out, kernel_size=kernel, bias=bias, activation=act,
                                            conv_clamp=conv_clamp if bias else None, channels_last=self.channels_last,
                                            trainable=trainable, **resampling))

    def forward(self, x, img, force_fp32=False):
        device = img.device if img is not None else x.device
        dtype = _block_dtype(self.use_fp16, force_fp32, device)
        memory_format = _memory_format(self.channels_last, dtype, device)
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            img = img.to(dtype=dtype, memory_format=memory_format)
            from_rgb = self.fromrgb(img)
            x = from_rgb if x is None else x + from_rgb
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture != 'resnet':
            return self.conv1(self.conv0(x)), img
        shortcut = self.skip(x, gain=SQRT_HALF)
        return shortcut.add_(self.conv1(self.conv0(x), gain=SQRT_HALF)), img


class MinibatchStdLayer(torch.nn.Module):
    """Append the per-group standard deviation of the features as extra channels."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        _keep(self, group_size=group_size, num_channels=num_channels)

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
        _keep(self, in_channels=in_channels, cmap_dim=cmap_dim, resolution=resolution, img_channels=img_channels,
              architecture=architecture)
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels else None
        features = in_channels + mbstd_num_channels
        self.conv = Conv2dLayer(features, in_channels, 3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, cmap_dim or 1)

    def forward(self, x, img, cmap, force_fp32=False):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            x = x + self.fromrgb(img.to(torch.float32))
        h = self.conv(x if self.mbstd is None else self.mbstd(x))
        logits = self.out(self.fc(h.flatten(1)))
        if self.cmap_dim == 0:
            return logits
        # Projection discriminator: the logit is the label embedding's scaled dot product with the features.
        return (logits * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))


@persistence.persistent_class
class DiscriminatorOpen(torch.nn.Module):
    """StyleGAN2's ResNet discriminator that can also return its feature map at `opn_resolution`."""

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768, channel_max=512,
                 num_fp16_res=0, conv_clamp=None, cmap_dim=None, opn_resolution=4, block_kwargs=None, mapping_kwargs=None,
                 epilogue_kwargs=None):
        super().__init__()
        block_kwargs, mapping_kwargs, epilogue_kwargs = block_kwargs or {}, mapping_kwargs or {}, epilogue_kwargs or {}
        log2 = int(np.log2(img_resolution))
        resolutions = [2 ** i for i in range(log2, 2, -1)]
        _keep(self, c_dim=c_dim, img_resolution=img_resolution, img_resolution_log2=log2, img_channels=img_channels,
              opn_resolution=opn_resolution, block_resolutions=resolutions)
        channels = _channel_table(resolutions + [4], channel_base, channel_max)
        fp16_from = _first_fp16_resolution(log2, num_fp16_res)
        if c_dim == 0:
            cmap_dim = 0
        elif cmap_dim is None:
            cmap_dim = channels[4]

        shared = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=(res >= fp16_from),
                                       **block_kwargs, **shared)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **shared)

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
