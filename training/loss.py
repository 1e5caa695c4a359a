"""ILSGAN losses: the StyleGAN2 non-saturating GAN loss on perturbed composites, mask priors, and the ILS term.

Phases (lazy regularisation, as StyleGAN2-ADA): Gmain every iteration; Greg is a no-op (path-length regularisation
is off in ILSGAN) so the loop skips it; Dmain every iteration; Dreg (R1) every D_reg_interval iterations.
"""
import contextlib

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from training.mask_stats import border_ring
from training.networks import MinibatchStdLayer


class LayerGeneratorStep(torch.nn.Module):
    """G.generate_layer as a forward(), so that DistributedDataParallel can wrap it."""

    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, z, c, eps):
        layers, shifted, _ = self.G.generate_layer(z, c, eps)
        return layers, shifted


def ils_sigma(cur_kimg, sigma, sigma_init, warmup_kimg):
    """The ILS weight: sigma_init up to `warmup_kimg` (inclusive, on the integer kimg), sigma after."""
    return sigma_init if int(cur_kimg) <= warmup_kimg else sigma


def _grad_gate(x):
    """Same values; pixels outside (-1, 1) pass no gradient."""
    inside = (x > -1) & (x < 1)
    return torch.where(inside, x, x.detach())


def region_pairs(layers):
    """The two (hidden, visible) pairs whose independence ILS encourages:
    the background hidden under the object vs the visible object, and the hidden object vs the visible background."""
    f, b, m = _grad_gate(layers['fg']), _grad_gate(layers['bg']), layers['mask']
    return [(b * m, f * m), (f * (1 - m), b * (1 - m))]


def club_bound(x, y, distribution, neg_weight=1.0, perm=None, q=None, bag=None):
    """CLUB sample upper bound on I(x; y): E_joint[log q(x|y)] - E_marginal[log q(x|y)], with x shuffled by `perm`.

    predetermined_laplace / _gaussian: q is a fixed unit-scale Laplace / Gaussian centred at y, so log q is
    -|x - y| / -(x - y)^2 / 2 (means over C,H,W). neural_*: q = (mu, log_scale) from the learned estimator `bag`.
    """
    n = x.shape[0]
    perm = torch.randperm(n, device=x.device) if perm is None else perm
    if distribution in ('predetermined_laplace', 'predetermined_gaussian'):
        dist = (lambda a, b: (a - b).abs()) if distribution == 'predetermined_laplace' else (lambda a, b: 0.5 * (a - b).square())
        pos = dist(x, y).mean(dim=[1, 2, 3]).mean()
        neg = dist(x[perm], y).mean(dim=[1, 2, 3]).mean()
        return -pos + neg * neg_weight
    if distribution in ('neural_laplace', 'neural_gaussian'):
        pos = bag.log_prob_terms(x, *q)
        neg = bag.log_prob_terms(x[perm], *q)
        return (pos.flatten(1).sum(dim=1) - neg.flatten(1).sum(dim=1)).mean() / 2
    raise ValueError(f'unknown distribution {distribution!r}')


def l1_distance_bound(layers, allow_grad=False):
    """The ILS_L1 alternative: maximise the fg/bg difference inside each layer's hidden region."""
    f, b, m = layers['fg'], layers['bg'], layers['mask']
    sg = (lambda t: t) if allow_grad else (lambda t: t.detach())
    valid_b = ((b > -1) & (b < 1)).to(b.dtype)
    valid_f = ((f > -1) & (f < 1)).to(f.dtype)
    hidden_bg = ((_grad_gate(b) - sg(f)).abs() * sg(m) * valid_b).mean()
    hidden_fg = ((_grad_gate(f) - sg(b)).abs() * (1 - sg(m)) * valid_f).mean()
    return -(hidden_bg + hidden_fg)


class ILSLoss:
    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10.0, estimator='club',
                 distribution='predetermined_laplace', ils_sigma=1.0, ils_sigma_init=0.2, ils_warmup_kimg=400,
                 neg_weight=1.0, bin_weight=2.0, msize_weight=2.0, min_msize=0.25, max_msize=None, do_perturb=True,
                 do_anti_leaking=True, estimator_bag=None, nll_weight=0.1, ada=None, border_weight=0.0,
                 diversity_weight=0.0):
        assert estimator in ('club', 'l1_distance', 'l1_distance_allowgrad')
        self.device = device
        # G: a PerturbGenerator, or its LayerGeneratorStep (possibly wrapped in DistributedDataParallel).
        self.G_step = LayerGeneratorStep(G) if hasattr(G, 'generate_layer') else G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.estimator = estimator
        self.distribution = distribution
        self.sigma_schedule = (ils_sigma, ils_sigma_init, ils_warmup_kimg)
        self.neg_weight = neg_weight
        self.bin_weight = bin_weight
        self.msize_weight = msize_weight
        self.min_msize = min_msize
        # Without the perturbation the original bounds the area from above too, at 1 - min_msize.
        self.max_msize = max_msize if max_msize is not None or do_perturb else 1 - min_msize
        self.do_perturb = do_perturb
        self.border_weight = border_weight
        self.diversity_weight = diversity_weight
        self.do_anti_leaking = do_anti_leaking
        # The estimator bag, possibly wrapped in DistributedDataParallel: call `bag_net`, read attributes of `bag`.
        self.bag_net = estimator_bag
        self.bag = getattr(estimator_bag, 'module', estimator_bag)
        self.nll_weight = nll_weight
        self.ada = ada
        self.mbstd_group = _mbstd_group(D)
        self.c = None  # ILSGAN is unconditional.

    def estimates(self, pairs):
        """The learned q(x | y) of every (x, y) region pair, from one call of the estimator bag."""
        return self.bag_net([y for _, y in pairs])

    def sigma(self, cur_kimg):
        return ils_sigma(cur_kimg, *self.sigma_schedule)

    def run_G(self, z, eps):
        layers, shifted = self.G_step(z, self.c, eps)
        return layers, (shifted if self.do_perturb else layers)

    def run_D(self, img):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, self.c)

    def mask_losses(self, mask):
        """Per-sample [N] binarisation (min(m, 1-m)) and area terms: relu(min_msize - mean m), plus
        relu(mean m - max_msize) when there is a maximum."""
        loss_bin = torch.minimum(mask, 1 - mask).mean(dim=[1, 2, 3])
        area = mask.mean(dim=[1, 2, 3])
        loss_msize = F.relu(self.min_msize - area)
        if self.max_msize is not None:
            loss_msize = loss_msize + F.relu(area - self.max_msize)
        return loss_bin, loss_msize

    def border_loss(self, mask):
        """Per-sample [N] mean of the un-shifted mask on the image's outer ring (the border prior; 0 when off).

        Not in the original. Without it, small networks can satisfy the area bounds with a foreground layer that is a
        frame along the image border, the object drawn in the background layer (docs/results.md).
        """
        if self.border_weight == 0:
            return torch.zeros(mask.shape[0], device=mask.device)
        return mask[:, 0, border_ring(*mask.shape[2:], device=mask.device)].mean(dim=1)

    def shape_diversity(self, mask):
        """Per-sample [N] mean |difference| between each un-shifted mask and the previous sample's, both moved so
        that their centroids sit at the image centre: how differently the batch's objects are shaped, not placed.

        Not in the original; the generator loss subtracts it times diversity_weight (docs/results.md). The centroid
        is held fixed (no gradient), so the term can only change the shapes, and the shift is bilinear so that every
        mask pixel gets a gradient.
        """
        if self.diversity_weight == 0:
            return torch.zeros(mask.shape[0], device=mask.device)
        centred = _centre_on_centroid(mask)
        return (centred - centred.roll(1, dims=0)).abs().mean(dim=[1, 2, 3])

    def ils_term(self, layers, cur_kimg):
        """The ILS (anti-leak) term on the un-perturbed layers: sigma times the bound on both region pairs."""
        if self.estimator == 'club':
            pairs = region_pairs(layers)
            qs = self.estimates(pairs) if self.distribution.startswith('neural') else [None] * len(pairs)
            bound = sum(club_bound(x, y, self.distribution, self.neg_weight, q=q, bag=self.bag)
                        for (x, y), q in zip(pairs, qs))
        else:
            bound = l1_distance_bound(layers, allow_grad=self.estimator == 'l1_distance_allowgrad')
        return self.sigma(cur_kimg) * bound

    def generator_loss(self, layers, shifted, cur_kimg):
        """L_G per the paper: adversarial + 2 binarisation + 2 min-area (means over the batch) + the ILS term."""
        logits = self.run_D(shifted['img'])
        loss_adv = F.softplus(-logits).squeeze(1)
        loss_bin, loss_msize = self.mask_losses(shifted['mask'])
        ils = self.ils_term(layers, cur_kimg) if self.do_anti_leaking else torch.zeros([], device=logits.device)
        loss_border = self.border_loss(layers['mask'])
        diversity = self.shape_diversity(layers['mask'])
        training_stats.report('Loss/scores/fake', logits)
        training_stats.report('Loss/signs/fake', logits.sign())
        training_stats.report('Loss/G/loss', loss_adv)
        training_stats.report('Loss/G/loss_bin', loss_bin)
        training_stats.report('Loss/G/loss_msize', loss_msize)
        # The fraction of the image each un-shifted mask covers: 1 everywhere is the trivial "all foreground" solution.
        training_stats.report('Loss/G/mask_area', layers['mask'].mean(dim=[1, 2, 3]))
        training_stats.report('Loss/G/anti_leaking', ils)
        if self.border_weight != 0:
            training_stats.report('Loss/G/loss_border', loss_border)
        if self.diversity_weight != 0:
            training_stats.report('Loss/G/shape_diversity', diversity)
        per_sample = loss_adv + self.bin_weight * loss_bin + self.msize_weight * loss_msize
        priors = self.border_weight * loss_border - self.diversity_weight * diversity
        return (per_sample + priors).mean() + ils

    def accumulate_gradients(self, phase, real_img, gen_z, gen_eps, gain, cur_kimg):
        assert phase in ('Gmain', 'Dmain', 'Dreg')
        if phase == 'Gmain':
            layers, shifted = self.run_G(gen_z, gen_eps)
            self.generator_loss(layers, shifted, cur_kimg).mul(gain).backward()
            return

        do_r1 = phase == 'Dreg' and self.r1_gamma != 0
        real = real_img.detach().requires_grad_(do_r1)
        # R1 differentiates the gradient of this D pass once more: its convolutions are set up for that.
        twice = conv2d_gradfix.double_backward() if do_r1 else contextlib.nullcontext()
        loss = 0
        if phase == 'Dmain':
            with torch.no_grad():
                layers, shifted = self.run_G(gen_z, gen_eps)
            with twice:
                fake_logits, logits = self.run_D_fake_real(shifted['img'], real)
            training_stats.report('Loss/scores/fake', fake_logits)
            training_stats.report('Loss/signs/fake', fake_logits.sign())
            training_stats.report('Loss/scores/real', logits)
            training_stats.report('Loss/signs/real', logits.sign())
            if self.ada is not None:
                self.ada.accumulate(logits)
            loss = F.softplus(fake_logits).mean() + F.softplus(-logits).mean()
            if self.bag is not None:
                pairs = region_pairs(layers)
                nll = sum(self.bag.nll(x, *q) for (x, _), q in zip(pairs, self.estimates(pairs)))
                training_stats.report('Loss/Autoreg/NLL', nll)
                loss = loss + nll * (self.nll_weight / gain)
        else:
            with twice:
                logits = self.run_D(real)
        if do_r1:
            with conv2d_gradfix.no_weight_gradients():
                grads, = torch.autograd.grad(logits.sum(), real, create_graph=True, only_inputs=True)
            penalty = grads.square().sum(dim=[1, 2, 3]).unsqueeze(1)
            training_stats.report('Loss/r1_penalty', penalty)
            training_stats.report('Loss/D/reg', penalty * (self.r1_gamma / 2))
            loss = loss + (penalty * (self.r1_gamma / 2)).mean()
        # `logits * 0` keeps every D parameter in the graph (DDP needs all of them to get a gradient).
        (loss + (logits * 0).mean()).mul(gain).backward()

    def run_D_fake_real(self, fake, real):
        """D's logits for fakes and reals, as two separate passes would give them, from one pass when possible.

        One batch of both is cheaper than two; it stays exact because the batch is laid out so that each
        minibatch-std group holds the samples it would hold in its own pass (the augment pipe is per sample).
        """
        n, g = fake.shape[0], self.mbstd_group
        if g is None or n != real.shape[0] or n % g != 0:
            return self.run_D(fake), self.run_D(real)
        both = torch.cat([fake.reshape(g, n // g, *fake.shape[1:]), real.reshape(g, n // g, *real.shape[1:])], dim=1)
        logits = self.run_D(both.reshape(2 * n, *fake.shape[1:])).reshape(g, 2 * n // g, -1)
        fake_logits, real_logits = logits.split(n // g, dim=1)
        return fake_logits.reshape(n, -1), real_logits.reshape(n, -1)

    def gradient_maps(self, gen_z, gen_eps):
        """|dL_G/d img'| and |dL_G/d m'| (adversarial + mask terms, no ILS) for the snapshot heat-maps."""
        with torch.no_grad():
            _, shifted = self.run_G(gen_z, gen_eps)
        img = shifted['img'].detach().requires_grad_(True)
        mask = shifted['mask'].detach().requires_grad_(True)
        logits = self.run_D(img)
        loss_bin, loss_msize = self.mask_losses(mask)
        total = (F.softplus(-logits).squeeze(1) + self.bin_weight * loss_bin + self.msize_weight * loss_msize).sum()
        g_img, g_mask = torch.autograd.grad(total, [img, mask])
        return shifted, g_img.abs().sum(dim=1, keepdim=True), g_mask.abs()


def _centre_on_centroid(mask):
    """[N, 1, H, W] masks resampled (bilinear, zero fill) so that each one's centroid is at the image centre."""
    n, _, h, w = mask.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=mask.device)  # Pixel centres in grid_sample's units.
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=mask.device)
    with torch.no_grad():
        mass = mask.sum(dim=[1, 2, 3]).clamp(min=1e-6)
        cy = (mask.sum(dim=3).squeeze(1) * ys).sum(1) / mass
        cx = (mask.sum(dim=2).squeeze(1) * xs).sum(1) / mass
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    grid = torch.stack([gx[None] + cx[:, None, None], gy[None] + cy[:, None, None]], dim=-1)
    return F.grid_sample(mask, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def _mbstd_group(D):
    """D's minibatch-std group size; 1 without such a layer; None when the whole batch is one group."""
    layers = [m for m in (D.modules() if D is not None else []) if isinstance(m, MinibatchStdLayer)]
    if not layers:
        return 1
    sizes = {m.group_size for m in layers}
    return sizes.pop() if len(sizes) == 1 else None


def r1_gamma_heuristic(resolution, batch_size):
    """The original's default R1 weight: 0.0002 * R^2 / batch."""
    return 0.0002 * (resolution ** 2) / batch_size


def ema_beta(batch_size, cur_nimg, ema_kimg, ema_rampup):
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))
