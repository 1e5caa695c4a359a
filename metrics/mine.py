"""MINE mutual-information evaluation of layered synthetic samples.

A statistics network T(x, y) is trained to maximise the Donsker-Varadhan lower bound
    I(X; Y) >= E_joint[T] - log E_marginal[exp T]
between pairs of image layers. 'separate' mode trains two estimators on the visible/hidden layer parts
(fg*m vs bg*m, bg*(1-m) vs fg*(1-m)); 'single' mode trains one on the whole layers (fg vs bg). The reported
number is the mean of the last 20 train-set evaluations, as in the original.

The training core (`train_mine`) only sees a pair source: a callable that maps sample indices to a list of
flattened (x, y) batches, one per estimator. `TensorPairs` wraps plain tensors (toy problems, tests);
`LayerPairs` builds the ILSGAN pairs from a synthetic sample folder.
"""
import concurrent.futures
import json
import math
import os
import time

import numpy as np
import PIL.Image
import torch
import tqdm

import dnnlib
from datasets import files_digest
from dnnlib.util import UserError, append_jsonl, fault_point, read_json, recorded_settings, settings_differ, write_json

try:
    import pyspng
except ImportError:
    pyspng = None

BOUNDS = ('dv-naive', 'dv')
SHUFFLES = ('replacement', 'permutation')
MODES = ('separate', 'single')
LAYERS = ('fg', 'bg', 'mask')
RESULTS_NAME = 'MI_estimation_results.json'
STALE_ON_RESTART = ('metric-eval-MI-train.jsonl', 'metric-eval-MI-val.jsonl', 'stats.jsonl')

# ----------------------------------------------------------------------------
# Synthetic sample folder -> uint8 tensors.


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise UserError(f'unknown {name} {value!r}; use one of {", ".join(allowed)}')


def _read_png(path):
    """Decode one PNG to an HxWx3 uint8 array."""
    if pyspng is not None:
        with open(path, 'rb') as f:
            img = pyspng.load(f.read())
        if img.ndim == 3 and img.shape[2] == 3:
            return img
    with PIL.Image.open(path) as img:  # PIL handles grey and alpha PNGs
        return np.asarray(img.convert('RGB'))


def _load_image(path, resolution):
    """Return the image resized to resolution x resolution, and its native size (width, height)."""
    try:
        img = _read_png(path)
    except (OSError, ValueError) as e:
        raise UserError(f'cannot read {path} ({e}); regenerate the synthetic samples') from None
    size = (img.shape[1], img.shape[0])
    if size != (resolution, resolution):
        img = np.asarray(PIL.Image.fromarray(img).resize((resolution, resolution), PIL.Image.BILINEAR))
    return img, size


def list_samples(syn_dir):
    """Sorted PNG names shared by fg/, bg/ and mask/; raises UserError on a missing or inconsistent folder."""
    if not os.path.isdir(syn_dir):
        raise UserError(f'synthetic sample folder not found: {syn_dir}; pass --path=<dir holding fg/ bg/ mask/>')
    names = {}
    for layer in LAYERS:
        layer_dir = os.path.join(syn_dir, layer)
        if not os.path.isdir(layer_dir):
            raise UserError(f'no {layer}/ folder in {syn_dir}; point --path at a generated synthetic sample folder')
        names[layer] = sorted(n for n in os.listdir(layer_dir) if n.lower().endswith('.png'))
    if not names['fg']:
        raise UserError(f'no PNG files in {os.path.join(syn_dir, "fg")}; generate the synthetic samples first')
    for layer in LAYERS[1:]:
        if names[layer] != names['fg']:
            diff = sorted(set(names[layer]) ^ set(names['fg']))
            raise UserError(f'{layer}/ and fg/ hold different files in {syn_dir} ({len(diff)} differ, e.g. {diff[0]}); '
                            f'regenerate the synthetic samples')
    return names['fg']


def load_layers(syn_dir, resolution=64, num_workers=8):
    """Load fg, bg [N,3,R,R] and mask [N,1,R,R] as uint8, resized to `resolution` (PIL bilinear).

    Kept as uint8 (10k samples at 64 px: 290 MB instead of 1.2 GB of floats); `LayerPairs` converts per batch.
    """
    names = list_samples(syn_dir)
    paths = [os.path.join(syn_dir, layer, name) for layer in LAYERS for name in names]
    with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:  # PNG decoding releases the GIL
        loaded = list(tqdm.tqdm(pool.map(lambda p: _load_image(p, resolution), paths), total=len(paths),
                                desc='Loading samples', unit='img', leave=False, disable=None))
    for path, (_, size) in zip(paths, loaded):
        if size != loaded[0][1]:
            raise UserError(f'{path} is {size[0]}x{size[1]} but {paths[0]} is {loaded[0][1][0]}x{loaded[0][1][1]}; '
                            f'regenerate the synthetic samples')
    stacked = torch.from_numpy(np.stack([img for img, _ in loaded])).permute(0, 3, 1, 2)  # [3N, 3, R, R]
    fg, bg, mask = stacked.split(len(names))
    return dict(fg=fg.contiguous(), bg=bg.contiguous(), mask=mask[:, :1].contiguous())

# ----------------------------------------------------------------------------
# Pair sources: indices -> [(x, y), ...] flattened float batches, one pair per estimator.


class TensorPairs:
    """Pairs given directly as tensors x, y of shape [N, ...] (one estimator)."""

    def __init__(self, x, y):
        assert len(x) == len(y)
        self.x, self.y = x.flatten(1).float(), y.flatten(1).float()
        self.num_estimators = 1
        self.num_features = self.x.shape[1] + self.y.shape[1]

    def __len__(self):
        return len(self.x)

    def __call__(self, idx):
        idx = idx.to(self.x.device)
        return [(self.x[idx], self.y[idx])]


class LayerPairs:
    """ILSGAN layer pairs from the uint8 tensors of `load_layers`.

    separate ('invis2vis'): (fg*m, bg*m) and (bg*(1-m), fg*(1-m)); single ('bg2fg'): (fg, bg).
    """

    def __init__(self, layers, mode, device='cpu'):
        _check_choice('mode', mode, MODES)
        self.layers = {k: v.to(device) for k, v in layers.items()}
        self.mode = mode
        self.num_estimators = 2 if mode == 'separate' else 1
        self.num_features = 2 * self.layers['fg'][0].numel()

    def __len__(self):
        return len(self.layers['fg'])

    def __call__(self, idx):
        idx = idx.to(self.layers['fg'].device)
        fg, bg = (self.layers[k][idx].float() / 127.5 - 1 for k in ('fg', 'bg'))  # as ToTensor + Normalize(0.5, 0.5)
        if self.mode == 'single':
            return [(fg.flatten(1), bg.flatten(1))]
        m = self.layers['mask'][idx].float() / 255  # soft alpha, no threshold
        return [((fg * m).flatten(1), (bg * m).flatten(1)),
                ((bg * (1 - m)).flatten(1), (fg * (1 - m)).flatten(1))]

# ----------------------------------------------------------------------------
# Statistics network and bound.


class StatisticsNetwork(torch.nn.Module):
    """T(x, y) = fc2(relu(fc1(concat(x, y)))), one scalar per pair."""

    def __init__(self, num_features, hidden=3000):
        super().__init__()
        self.fc1 = torch.nn.Linear(num_features, hidden)
        self.fc2 = torch.nn.Linear(hidden, 1)

    def forward(self, x, y):
        return self.fc2(torch.relu(self.fc1(torch.cat([x, y], 1)))).squeeze(1)


def dv_bound(t_joint, t_marginal, bound='dv-naive'):
    """Donsker-Varadhan bound mean(T_joint) - log mean(exp T_marginal), in nats.

    'dv-naive' is the original's literal formula (overflows once T exceeds ~88 in fp32);
    'dv' is the same quantity through logsumexp, stable for any T.
    """
    _check_choice('bound', bound, BOUNDS)
    if bound == 'dv-naive':
        return t_joint.mean() - torch.log(torch.exp(t_marginal).mean())
    return t_joint.mean() - (torch.logsumexp(t_marginal, 0) - math.log(len(t_marginal)))


def marginal_indices(batch_size, shuffle, generator):
    """Indices that pair each x with another sample's y. 'replacement' (the original) keeps some joint pairs."""
    _check_choice('shuffle', shuffle, SHUFFLES)
    if shuffle == 'replacement':
        return torch.randint(batch_size, (batch_size,), generator=generator)
    return torch.randperm(batch_size, generator=generator)


def mine_bounds(nets, pairs, bound, shuffle, generator):
    """One DV estimate per network on a batch of pairs; a fresh shuffle per network."""
    out = []
    for net, (x, y) in zip(nets, pairs):
        idx = marginal_indices(len(x), shuffle, generator).to(x.device)
        t_joint, t_marginal = net(torch.cat([x, x]), torch.cat([y, y[idx]])).chunk(2)  # one pass for both
        out.append(dv_bound(t_joint, t_marginal, bound=bound))
    return torch.stack(out)

# ----------------------------------------------------------------------------
# Training and evaluation.


def make_estimators(num_estimators, num_features, *, hidden, lr, device):
    """The statistics networks and one Adam over all of them (the separate mode sums their losses)."""
    nets = [StatisticsNetwork(num_features, hidden).to(device) for _ in range(num_estimators)]
    params = [p for net in nets for p in net.parameters()]
    return nets, torch.optim.Adam(params, lr=lr, fused=torch.device(device).type == 'cuda')


def train_step(nets, opt, pairs, bound, shuffle, generator):
    """One Adam step on -sum of the bounds. Returns the bounds [K], or None (no step) if any is non-finite."""
    mi = mine_bounds(nets, pairs, bound, shuffle, generator)
    if not mi.isfinite().all():
        return None
    opt.zero_grad(set_to_none=True)
    (-mi.sum()).backward()
    opt.step()
    return mi.detach()


def infinite_batches(num_samples, batch_size, generator):
    """Shuffled batches forever; epochs run into each other, so any num_samples >= 1 works."""
    order = torch.empty(0, dtype=torch.long)
    while True:
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(num_samples, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


@torch.no_grad()
def evaluate(nets, source, indices, *, batch_size, bound, shuffle, generator):
    """Unweighted mean over batches of the per-batch bound, as the original's compute_mi.

    Non-finite batch values are left out of the mean (per estimator) and counted.
    Returns (means [K], number of non-finite values).
    """
    values = torch.stack([mine_bounds(nets, source(idx), bound, shuffle, generator).cpu()
                          for idx in indices.split(batch_size)])  # [batches, K]
    finite = values.isfinite()
    means = torch.where(finite, values, 0).sum(0) / finite.sum(0)  # NaN where no batch was finite
    return means.tolist(), int((~finite).sum())


def eval_schedule(iters, interval=None):
    """Iterations after which to evaluate.

    The original evaluates after the first 20-iteration tick and every 400 iterations after that, plus at the
    end (20, 420, ..., 99620, 100000). For short runs the interval shrinks to iters // 10 so that there are
    still ~10 evaluations to average.
    """
    interval = interval or min(400, max(1, iters // 10))
    first = min(20, interval)
    return sorted(set(range(first, iters + 1, interval)) | {iters})


def train_mine(source, *, iters, run_dir=None, batch_size=64, eval_batch_size=128, hidden=3000, lr=2e-4,
               bound='dv-naive', shuffle='replacement', seed=0, device='cpu', eval_interval=None, average_last=20,
               val_fraction=0.1, max_nonfinite=100, save_checkpoints=False, progress_file=None):
    """Train one MINE estimator per pair of `source` and return the reported estimates.

    Returns a dict: 'mi' (per estimator: mean of the last `average_last` train evaluations), 'final_lr',
    'train_evals' (list of per-estimator train MI), 'nonfinite_train' and 'nonfinite_eval' (skipped counts).
    With `run_dir`, writes metric-eval-MI-{train,val}.jsonl, stats.jsonl and optional checkpoints there.
    """
    _check_choice('bound', bound, BOUNDS)
    _check_choice('shuffle', shuffle, SHUFFLES)
    device = torch.device(device)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # sampler and shuffles: identical on CPU and GPU

    nets, opt = make_estimators(source.num_estimators, source.num_features, hidden=hidden, lr=lr, device=device)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode='max', factor=0.1, patience=10, threshold=1e-4,
                                                       threshold_mode='rel')
    n = len(source)
    eval_sets = dict(train=torch.arange(n), val=torch.arange(int((1 - val_fraction) * n), n))
    schedule = eval_schedule(iters, eval_interval)
    checkpoints = {schedule[0], next(i for i in schedule if i >= iters // 2), iters} if save_checkpoints else set()
    keys = ['MI'] if len(nets) == 1 else [f'MI{k + 1}' for k in range(len(nets))]

    batches = infinite_batches(n, batch_size, generator)
    train_evals, nonfinite_train, nonfinite_eval, consecutive = [], 0, 0, 0
    loss_sum, loss_count, tick_start, tick_iter = 0.0, 0, time.time(), 0
    # disable=None: draw only on a terminal, so redirected output stays free of bar fragments.
    bar = tqdm.tqdm(total=iters, desc='MINE', unit='it', file=progress_file,
                    disable=True if progress_file is None else None, dynamic_ncols=True)
    it = 0
    while it < iters:
        fault_point('mine')
        mi = train_step(nets, opt, source(next(batches)), bound, shuffle, generator)
        if mi is None:
            # The original returned 0 and retried forever; skip the batch (no step), but give up eventually.
            nonfinite_train, consecutive = nonfinite_train + 1, consecutive + 1
            if consecutive >= max_nonfinite:
                raise UserError(f'MINE bound was non-finite for {consecutive} consecutive batches at iteration {it}; '
                                f'use --bound=dv (numerically stable)')
            continue
        consecutive = 0
        it += 1
        loss_sum, loss_count = loss_sum - mi.sum().item(), loss_count + 1
        bar.update(1)
        if it % 20 == 0 or it == iters:
            bar.set_postfix({k: f'{v:.4f}' for k, v in zip(keys, mi.tolist())})
        if it not in schedule:
            continue

        iters_per_sec = (it - tick_iter) / (time.time() - tick_start)
        lr = opt.param_groups[0]['lr']
        results, skipped = _evaluate_splits(nets, source, eval_sets, keys, it, lr, run_dir, batch_size=eval_batch_size,
                                            bound=bound, shuffle=shuffle, generator=generator)
        nonfinite_eval += skipped
        train_evals.append(results['train'])
        _append_jsonl(run_dir, 'stats.jsonl', dict(iter=it, loss=loss_sum / max(loss_count, 1), lr=lr,
                                                   iters_per_sec=iters_per_sec, nonfinite_train=nonfinite_train,
                                                   nonfinite_eval=nonfinite_eval, timestamp=time.time()))
        bar.clear()
        print(f'iter {it:<7d} ' + ' '.join(f'train {k} {v:.4f} val {k} {w:.4f}' for k, v, w in
              zip(keys, results['train'], results['val'])) + f' lr {lr:g}')
        bar.refresh()
        sched.step(sum(results['train']))
        if it in checkpoints:
            _save_checkpoint(run_dir, it, nets, opt, sched)
        loss_sum, loss_count, tick_start, tick_iter = 0.0, 0, time.time(), it
    bar.close()

    last = torch.tensor(train_evals[-average_last:])
    return dict(mi=last.nanmean(0).tolist(), final_lr=opt.param_groups[0]['lr'], train_evals=train_evals,
                nonfinite_train=nonfinite_train, nonfinite_eval=nonfinite_eval)


def _evaluate_splits(nets, source, eval_sets, keys, it, lr, run_dir, **evaluate_kwargs):
    """Each estimator's MI on every split of eval_sets at iteration `it`, also appended to the split's
    metric-eval-MI-<split>.jsonl. Returns ({split: [MI per estimator]}, non-finite batch values skipped)."""
    results, skipped = {}, 0
    for split, indices in eval_sets.items():
        means, nonfinite = evaluate(nets, source, indices, **evaluate_kwargs)
        skipped += nonfinite
        results[split] = means
        _append_jsonl(run_dir, f'metric-eval-MI-{split}.jsonl',
                      dict(iter=it, **dict(zip(keys, means)), lr=lr, timestamp=time.time()))
    return results, skipped


def _append_jsonl(run_dir, name, record):
    if run_dir is not None:
        append_jsonl(os.path.join(run_dir, name), [record])


def _save_checkpoint(run_dir, it, nets, opt, sched):
    if run_dir is None:
        return
    state = dict(nets=[net.state_dict() for net in nets], opt=opt.state_dict(), sched=sched.state_dict(), iter=it)
    with dnnlib.util.atomic_write(os.path.join(run_dir, f'network-snapshot-{it:08d}.pth')) as f:
        torch.save(state, f)


# ----------------------------------------------------------------------------
# One mode in its run dir, and the full evaluation.


def run_settings(syn_dir, iters, resolution=64, bound='dv-naive', shuffle='replacement', seed=0):
    """What a MINE result depends on, the content of the samples included (a digest of their file names, sizes and
    mtimes): a result is reused only for the same settings."""
    names = list_samples(syn_dir)
    files = [f'{layer}/{name}' for layer in LAYERS for name in names]
    return dict(synthetic_path=os.path.abspath(syn_dir), syn_digest=files_digest(syn_dir, files),
                num_samples=len(names), resolution=resolution, iters=iters, bound=bound, shuffle=shuffle, seed=seed)


def matches(outdir, settings):
    """True when `outdir` holds MINE modes, finished or not, all recorded with these settings (run_settings)."""
    recorded = [r for r in (recorded_settings(os.path.join(outdir, mode)) for mode in MODES) if r is not None]
    return bool(recorded) and not any(settings_differ(r, settings) for r in recorded)


def run_mode(layers, mode, run_dir, *, settings, device, save_checkpoints=False):
    """Train the `mode` estimators into `run_dir`; writes log.txt, training_options.json (settings and the rest) and
    the result json."""
    os.makedirs(run_dir, exist_ok=True)
    for name in STALE_ON_RESTART:  # an interrupted earlier try would otherwise leave extra lines
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    with dnnlib.util.Logger(os.path.join(run_dir, 'log.txt')) as logger:
        options = dict(settings, mode=mode, device=str(device), torch_version=torch.__version__,
                       save_checkpoints=save_checkpoints)
        write_json(os.path.join(run_dir, 'training_options.json'), options)
        print(f'MINE {mode}: {json.dumps(options)}')
        # Draw the progress bar on the terminal, not into log.txt.
        out = train_mine(LayerPairs(layers, mode, device), run_dir=run_dir, device=device,
                         progress_file=logger.stderr, iters=settings['iters'], bound=settings['bound'],
                         shuffle=settings['shuffle'], seed=settings['seed'], save_checkpoints=save_checkpoints)
        suffixes = ['1', '2'] if mode == 'separate' else ['']
        result = {f'ave_MI_train{s}': v for s, v in zip(suffixes, out['mi'])}
        result.update(final_lr=out['final_lr'], nonfinite_train=out['nonfinite_train'],
                      nonfinite_eval=out['nonfinite_eval'])
        write_json(os.path.join(run_dir, RESULTS_NAME), result)
        mis = ' '.join(f'{v:.4f}' for v in out['mi'])
        print(f'[ {mode.capitalize()} ]: {mis} ==> Final lr: {out["final_lr"]:g}')
    return result


def eval_mi(synthetic_path, outdir=None, iters=100000, resolution=64, bound='dv-naive', shuffle='replacement',
            device=None, save_checkpoints=False, seed=0, modes=MODES):
    """MINE evaluation of a synthetic sample folder.

    Runs each of `modes` into `<outdir>/<mode>/`; outdir defaults to the next `<syn>/MI-estimation-MINE/<NNNNN>`.
    With an explicit outdir a mode whose result json already exists is reused if it was made with the same settings
    and samples (run_settings), so a pipeline can resume; made otherwise, it is an error.
    Returns {mode: result dict} and writes it as the combined MI_estimation_results.json in outdir.
    """
    for mode in modes:
        _check_choice('mode', mode, MODES)
    _check_choice('bound', bound, BOUNDS)
    _check_choice('shuffle', shuffle, SHUFFLES)
    if iters < 1:
        raise UserError(f'--iters must be at least 1, got {iters}')
    if resolution < 1:
        raise UserError(f'--resolution must be at least 1, got {resolution}')
    try:
        device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    except RuntimeError:
        raise UserError(f'unknown device {device!r}; use --device=cpu or --device=cuda') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UserError('CUDA is not available in this PyTorch build or machine; use --device=cpu')
    torch.backends.cudnn.benchmark = True
    settings = run_settings(synthetic_path, iters, resolution, bound, shuffle, seed)  # Fails on a bad folder now.
    if outdir is None:
        # The original names these runs by bare id, so drop the dash of an empty description.
        outdir = dnnlib.util.next_run_dir(os.path.join(synthetic_path, 'MI-estimation-MINE'), '').rstrip('-')
    os.makedirs(outdir, exist_ok=True)

    results, layers = {}, None
    for mode in modes:
        done = os.path.join(outdir, mode, RESULTS_NAME)
        if os.path.isfile(done):
            differ = settings_differ(recorded_settings(os.path.join(outdir, mode)), settings)
            if differ:
                raise UserError(f'{os.path.join(outdir, mode)} holds a MINE result of other settings or samples '
                                f'({"; ".join(differ)}); pass another --outdir')
            results[mode] = read_json(done)
            print(f'[ {mode.capitalize()} ]: reusing {done}')
            continue
        if layers is None:
            layers = load_layers(synthetic_path, resolution)
        results[mode] = run_mode(layers, mode, os.path.join(outdir, mode), settings=settings, device=device,
                                 save_checkpoints=save_checkpoints)
    write_json(os.path.join(outdir, RESULTS_NAME), results)
    return results

# ----------------------------------------------------------------------------
