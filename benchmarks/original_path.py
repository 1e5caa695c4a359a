"""The original's cost, for side-by-side benchmarks against ours: the same networks and weights, computed the way the
original ILSGAN code computes them (StyleGAN2-ADA's ops on PyTorch >= 1.10, its loss, its training loop).

Everything here gives ours' results (tests/test_benchmarks.py checks outputs and gradients); only the work differs.

Ops, swapped in by `original_formulation()`:
- upfirdn2d inserts zeros to upsample, also when up == 1 (a reshape and a 6-D pad that copy the whole input), pads
  explicitly and convolves with the full 2-D filter at full resolution, then drops pixels to downsample;
- modulated_conv2d materialises the per-sample weights [N,O,I,kh,kw] to compute the demodulation coefficients;
- bias_act allocates a new tensor for the bias, the activation and the gain;
- dense layers scale their weights by the equalised-lr gain on every call;
- fp32 activations and weights stay in the contiguous (NCHW) layout;
- inference in fp32 uses the grouped-conv ("fused") modulated convolution on every device;
- normalize_2nd_moment, modulated_conv2d, conv2d_resample, upfirdn2d, bias_act and training_stats.report run inside
  a profiler range on every call (the original's misc.profiled_function).
Loss (`OriginalLoss`):
- G runs the mapping networks a second time on another z for style mixing, also at mixing probability 0 (every
  preset), and writes a zero-width slice back, so Gmain's backward also runs through both extra mapping passes;
  the crossover points are 0-d tensors (two host syncs on CUDA);
- the layer transform shifts fg and mask sample by sample in a Python loop, bounds read from 0-d tensors;
- Dmain runs D on the fakes and on the reals in two passes with two backward calls, the first under anomaly
  detection (a NaN check of every gradient);
- the ILS term gates gradients with float masks and a multiply-add, draws its permutations on the CPU and checks
  the result for NaN (a host sync on CUDA).
Loop (`OriginalIteration`):
- four phases per iteration, Gmain, Greg (a no-op every 4th iteration that still toggles requires_grad, sanitises
  and steps the optimiser), Dmain, Dreg (every 16th);
- latents, labels and shifts for all four phases are drawn up front; labels come one per sample from the dataset;
- gradients are sanitised parameter by parameter.
Not emulated (measured or bounded in docs/benchmarks.md): the ADA pipe at p = 0 (the original ran its near-identity
resampling and colour transform on every D input; the benchmark trains without augmentation), CUDA events per phase,
the minibatch-std group size computed as a tensor, profiler ranges inside the mapping and synthesis networks.
"""
import contextlib
import functools

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d
from training import networks, training_loop


def _profiled(fn):
    """fn inside a profiler range named after it, entered on every call."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    return wrapper


def _modulated_conv2d_original(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                               demodulate=True, flip_weight=True, fused_modconv=True):
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None
    if not fused_modconv:
        x = x * styles.reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(x, weight, f=resample_filter, up=up, down=down, padding=padding,
                                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            return fma.fma(x, dcoefs.reshape(batch_size, -1, 1, 1), noise)
        if demodulate:
            return x * dcoefs.reshape(batch_size, -1, 1, 1)
        return x.add_(noise) if noise is not None else x
    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample.conv2d_resample(x, w.reshape(-1, in_channels, kh, kw), f=resample_filter, up=up, down=down,
                                        padding=padding, groups=batch_size, flip_weight=flip_weight)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    return x.add_(noise) if noise is not None else x


def _bias_act_original(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    spec = bias_act.activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


_upfirdn2d_ref = upfirdn2d._upfirdn2d_ref


def _upfirdn2d_original(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """The reference algorithm with its zero insertion done unconditionally: at up == 1 it is a full copy."""
    upx, upy = upfirdn2d._parse_scaling(up)
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, upx - 1, 0, 0, 0, upy - 1]).reshape(n, c, h * upy, w * upx)
    return _upfirdn2d_ref(x, f, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def _fully_connected_original(self, x):
    # The original's FC: its own weight/bias scaling, addmm for linear layers, bias_act (reference path) otherwise.
    bias = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
    weight_t = (self.weight.to(x.dtype) * self.weight_gain).t()
    if bias is not None and self.activation == 'linear':
        return torch.addmm(bias.unsqueeze(0), x, weight_t)
    return bias_act.bias_act(x.matmul(weight_t), bias, act=self.activation)


def _fused_modconv_original(training, dtype, batch_size, device):
    return (not training) and (dtype == torch.float32 or batch_size == 1)


def _memory_format_original(channels_last, dtype, device):
    return torch.channels_last if channels_last and dtype == torch.float16 else torch.contiguous_format


_PATCHES = [(networks, 'modulated_conv2d', _profiled(_modulated_conv2d_original)),
            (networks, 'normalize_2nd_moment', _profiled(networks.normalize_2nd_moment)),
            (networks, '_memory_format', _memory_format_original),
            (networks, '_fused_modconv', _fused_modconv_original),
            (networks.FullyConnectedLayer, 'forward', _fully_connected_original),
            (conv2d_resample, 'conv2d_resample', _profiled(conv2d_resample.conv2d_resample)),
            (bias_act, '_bias_act_ref', _profiled(_bias_act_original)),
            (upfirdn2d, '_upfirdn2d_ref', _profiled(_upfirdn2d_original)),
            (training_stats, 'report', _profiled(training_stats.report))]


@contextlib.contextmanager
def original_formulation():
    """Run the enclosed code with the original's formulation of the ops listed above."""
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in _PATCHES]
    for owner, name, replacement in _PATCHES:
        setattr(owner, name, replacement)
    try:
        with upfirdn2d.use_fallback('ref'):
            yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def _shift_per_sample(x, tx, ty):
    """The integer fg/mask shift as the original loops it: one slice copy per sample into zeros, its bounds taken
    from 0-d tensors (every comparison a host read)."""
    h, w = x.shape[2], x.shape[3]
    out = torch.zeros_like(x)
    for i in range(x.shape[0]):
        dx, dy = tx[i], ty[i]
        src = x[i, :, max(0, -dy):min(h, h - dy), max(0, -dx):min(w, w - dx)]
        out[i, :, max(0, dy):min(h, h + dy), max(0, dx):min(w, w + dx)] = src
    return out


def _composite(bg, fg, mask):
    return {'bg': bg, 'fg': fg, 'mask': mask, 'fg*mask': mask * fg, 'img': (1 - mask) * bg + mask * fg}


class OriginalLoss:
    """ILSLoss's phases computed as the original's loss computes them (see the module docstring).

    Supports what the benchmarked presets use: the predetermined Laplace/Gaussian CLUB bound, the integer shift,
    no conditioning. accumulate_gradients() takes the phase's labels `c` like the original's.
    """

    def __init__(self, G, D, augment_pipe=None, r1_gamma=10.0, distribution='predetermined_laplace', ils_sigma=1.0,
                 ils_sigma_init=0.2, ils_warmup_kimg=400, neg_weight=1.0, bin_weight=2.0, msize_weight=2.0,
                 min_msize=0.25, style_mixing_prob=0.0):
        if distribution not in ('predetermined_laplace', 'predetermined_gaussian'):
            raise ValueError(f'OriginalLoss does not emulate the {distribution!r} bound')
        self.G, self.D, self.augment_pipe, self.r1_gamma = G, D, augment_pipe, r1_gamma
        self.distribution, self.style_mixing_prob = distribution, style_mixing_prob
        self.sigma_schedule = (ils_sigma, ils_sigma_init, ils_warmup_kimg)
        self.neg_weight, self.bin_weight, self.msize_weight, self.min_msize = neg_weight, bin_weight, msize_weight, min_msize

    def _crossover(self, num_ws, device):
        """The style-mixing cutoff as a 0-d tensor: a random layer with probability style_mixing_prob, else num_ws."""
        cut = torch.empty([], dtype=torch.int64, device=device).random_(1, num_ws)
        keep = torch.rand([], device=device) < self.style_mixing_prob
        return torch.where(keep, cut, torch.full_like(cut, num_ws))

    def run_G(self, z, c):
        G = self.G
        ws_bg, ws_fg = G.mapping_bg(z, None), G.mapping_fg(z, c)
        with torch.autograd.profiler.record_function('mixing'):
            other = torch.randn_like(z)
            for mapping, ws, labels in ((G.mapping_bg, ws_bg, None), (G.mapping_fg, ws_fg, c)):
                cut = self._crossover(ws.shape[1], z.device)
                ws[:, cut:] = mapping(other, labels, skip_w_avg_update=True)[:, cut:]
        bg = G.synthesis_bg(ws_bg)
        rgba = G.synthesis_fg(ws_fg)
        return _composite(bg, rgba[:, :G.img_channels], rgba[:, G.img_channels:].sigmoid())

    def transform(self, layers, eps):
        Tx = self.G.Tx
        if Tx.bg_contrast > 0 or Tx.scale_max > 0 or Tx.rotate_max > 0 or Tx.xfrac_max > 0:
            raise ValueError('OriginalLoss emulates the integer shift only')
        width = layers['fg'].shape[3]
        tx = torch.round(eps[:, 0] * Tx.xint_max * width).long()
        ty = torch.round(eps[:, 1] * Tx.xint_max * width).long()
        return _composite(layers['bg'], _shift_per_sample(layers['fg'], tx, ty), _shift_per_sample(layers['mask'], tx, ty))

    def run_D(self, img):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, None)

    def sigma(self, cur_kimg):
        sigma, sigma_init, warmup_kimg = self.sigma_schedule
        return sigma_init if cur_kimg <= warmup_kimg else sigma

    def ils(self, layers, sigma):
        fg, bg, mask = layers['fg'], layers['bg'], layers['mask']
        inside_fg, inside_bg = (fg > -1) * (fg < 1), (bg > -1) * (bg < 1)
        fg = fg * inside_fg + fg.detach() * ~inside_fg
        bg = bg * inside_bg + bg.detach() * ~inside_bg
        hidden, visible = [bg * mask, fg * (1 - mask)], [fg * mask, bg * (1 - mask)]
        bound = 0
        for x, y in zip(hidden, visible):
            n = x.shape[0]
            perm = torch.randperm(n).long()
            pos = self._distance(x.reshape(n, -1), y.reshape(n, -1))
            neg = self._distance(x[perm].reshape(n, -1), y.reshape(n, -1))
            term = neg.mean() * self.neg_weight - pos.mean()
            bound = bound + (term if self.distribution == 'predetermined_laplace' else 0.5 * term)
        mi = bound * sigma
        if torch.isnan(mi).sum() != 0:
            raise FloatingPointError('the ILS term is NaN')
        return mi

    def _distance(self, x, y):
        return (x - y).abs().mean(dim=1) if self.distribution == 'predetermined_laplace' else (x - y).square().mean(dim=1)

    def accumulate_gradients(self, phase, real_img, gen_z, gen_eps, gain, cur_kimg, c=None):
        assert phase in ('Gmain', 'Greg', 'Dmain', 'Dreg')
        report = training_stats.report
        if phase == 'Gmain':
            with torch.autograd.profiler.record_function('Gmain_forward'):
                layers = self.run_G(gen_z, c)
                shifted = self.transform(layers, gen_eps)
                logits = self.run_D(shifted['img'])
                report('Loss/scores/fake', logits)
                report('Loss/signs/fake', logits.sign())
                adv = report('Loss/G/loss', F.softplus(-logits))
                mi = report('Loss/G/anti_leaking', self.ils(layers, self.sigma(cur_kimg)))
                report('Loss/G/divergence', 0)
                mask = shifted['mask']
                binarise = report('Loss/G/loss_bin', torch.min(1 - mask, mask).mean(dim=[2, 3]))
                area = report('Loss/G/loss_msize', F.relu(self.min_msize - mask.mean(dim=(2, 3))))
                total = adv + binarise.mul(self.bin_weight) + area.mul(self.msize_weight) + mi
            with torch.autograd.profiler.record_function('Gmain_backward'):
                total.mean().mul(gain).backward()
            return
        if phase == 'Greg':
            return  # Path-length regularisation is off in ILSGAN; the phase still runs in the loop.
        if phase == 'Dmain':
            with torch.autograd.profiler.record_function('Dgen_forward'):
                shifted = self.transform(self.run_G(gen_z, c), gen_eps)
                fake = self.run_D(shifted['img'])
                report('Loss/scores/fake', fake)
                report('Loss/signs/fake', fake.sign())
            with torch.autograd.profiler.record_function('Dgen_backward'), torch.autograd.set_detect_anomaly(True):
                F.softplus(fake).mean().mul(gain).backward()
        do_r1 = phase == 'Dreg' and self.r1_gamma != 0
        with torch.autograd.profiler.record_function(phase + '_real_forward'):
            real = real_img.detach().requires_grad_(do_r1)
            logits = self.run_D(real)
            report('Loss/scores/real', logits)
            report('Loss/signs/real', logits.sign())
            loss = F.softplus(-logits) if phase == 'Dmain' else 0
            if do_r1:
                grads, = torch.autograd.grad(logits.sum(), real, create_graph=True, only_inputs=True)
                penalty = report('Loss/r1_penalty', grads.square().sum([1, 2, 3]))
                loss = loss + report('Loss/D/reg', penalty * (self.r1_gamma / 2))
        with torch.autograd.profiler.record_function(phase + '_real_backward'):
            (logits * 0 + loss).mean().mul(gain).backward()


class OriginalIteration:
    """One training iteration as the original's loop runs it, in timed parts: `parts` lists (name, interval);
    run(name) runs one. The reals are a fixed uint8 batch on the CPU, as the data loader delivers them."""

    def __init__(self, G, D, G_ema, loss, G_opt, D_opt, real_uint8, ema_beta, G_reg_interval=4, D_reg_interval=16):
        self.G, self.D, self.G_ema, self.loss = G, D, G_ema, loss
        self.device = next(G.parameters()).device
        self.opts = {'G': G_opt, 'D': D_opt}
        self.real_uint8 = real_uint8
        self.ema_beta = ema_beta
        self.parts = [('fetch', 1), ('Gmain', 1), ('Greg', G_reg_interval), ('Dmain', 1), ('Dreg', D_reg_interval),
                      ('ema', 1)]
        self.gains = dict(self.parts)
        self.phase_index = {'Gmain': 0, 'Greg': 1, 'Dmain': 2, 'Dreg': 3}
        self.batch = None

    def run(self, name):
        if name == 'fetch':
            self.batch = self._fetch()
        elif name == 'ema':
            training_loop.update_ema(self.G_ema, self.G, self.ema_beta)  # The same statements as the original's.
        else:
            self._phase(name)

    def _fetch(self):
        device, n = self.device, self.real_uint8.shape[0]
        real = self.real_uint8.to(device).to(torch.float32) / 127.5 - 1
        count = len(self.phase_index) * n
        z = torch.randn([count, self.G.z_dim], device=device).split(n)
        labels = torch.from_numpy(np.stack([np.zeros([0], np.float32).copy() for _ in range(count)]))
        if device.type == 'cuda':
            labels = labels.pin_memory()
        c = labels.to(device).split(n)
        eps = (2 * torch.rand([count, self.G.eps_dim], device=device) - 1).split(n)
        return real, z, c, eps

    def _phase(self, name):
        real, z, c, eps = self.batch
        idx = self.phase_index[name]
        module, opt = (self.G, self.opts['G']) if name.startswith('G') else (self.D, self.opts['D'])
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        self.loss.accumulate_gradients(name, real, z[idx], eps[idx], self.gains[name], cur_kimg=0, c=c[idx])
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

