"""Segmentation evaluation: train a U-Net on synthetic (image, mask) pairs, select it on the
synthetic val split, test it once on real images with ground-truth masks.

One code path serves both protocols of the original:
- E64:  input_size = score_size = S; the net sees S x S images and is scored on S x S masks.
- E128: input_size = 64, score_size = 128; the logits are upsampled x2 (bilinear, align_corners=False) and scored
        against 128 x 128 masks, for val and test alike.

Kept from the original:
- the split by sorted file order, not at random: the first int(0.9 N) pairs train, the rest validate (fine for
  i.i.d. generator samples);
- Adam at a constant lr 1e-3: the original built StepLR(4000, 0.2) but never stepped it;
- batch 64 (val/test 64 too), 6000 iterations, pixel-mean cross-entropy, selection by val foreground IoU.

Changed, each a fix or a simplification with the same distribution:
- the train order is a fresh seeded permutation per epoch, and every random draw is derived from (seed, iteration),
  so a resumed run continues exactly as an uninterrupted one would (the original used sg's InfiniteSampler);
- the grids never draw training batches (the original consumed 4 before training);
- per-image IoU/DICE of an image with empty prediction and empty ground truth is 1.0, not NaN;
- only the best and the last checkpoints are kept unless keep_all (each is ~160 MB with the Adam state).

Added, opt-in (reshape > 0, `--reshape`): the U-Net trains on the generator's layers re-composited with the
foreground and its mask bent by a smooth random field, so that a generator that draws one shape still teaches many.
And (`--self-train DATA`): rounds of self-training on the unlabelled training images after the synthetic phase
(metrics/self_train.py); the last net is tested.
"""
import glob
import json
import os
import sys
import time

import click
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import datasets
import dnnlib
from datasets import drc
from datasets.imaging import center_square, crop_resize, open_image, read_rgb, to_chw
from datasets.pairs import is_pairs_folder, read_pair
from datasets.parallel import ordered_map
from dnnlib.util import (UserError, append_jsonl, fault_point, read_json, read_jsonl, recorded_settings, settings_differ,
                         write_json, write_jsonl)
from metrics import self_train
from metrics.seg_augment import PRESETS, AugmentPipe, augment_pair, reshape_foreground, to_float
from metrics.segmentation import SegmentationMeter
from metrics.unet import UNet
from torch_utils import files
from training import visualize

GRID_COLUMNS, GRID_CELLS = 7, 224  # The original's 7 x 32 grid.
BATCH = 64  # The original's training batch.
EVAL_BATCH = 64  # The original's val/test batch, whatever the training batch.
TICK = 20
VAL_INTERVAL = 1000


def progress(iterable, **kwargs):
    """A tqdm bar on the real terminal: never teed into log.txt, and silent when stderr is not a TTY."""
    return tqdm(iterable, file=getattr(sys.stderr, 'stderr', sys.stderr), disable=None, leave=False, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Synthetic pairs: <syn>/img/NNNNNN.png and <syn>/mask/NNNNNN.png (mask = round(255 alpha) in all three channels).


def list_pairs(syn_dir):
    """Sorted (image, mask) paths of a synthetic folder, with every layout problem reported as a UserError."""
    if not os.path.isdir(syn_dir):
        raise UserError(f'synthetic data folder {syn_dir} does not exist; point --syn-data at a generator output')
    found = {}
    for sub in ('img', 'mask'):
        if not os.path.isdir(os.path.join(syn_dir, sub)):
            raise UserError(f'{syn_dir} has no {sub}/ folder; point --syn-data at a generator output (img/ + mask/)')
        found[sub] = sorted(os.path.basename(p) for p in glob.glob(os.path.join(syn_dir, sub, '*.png')))
        if not found[sub]:
            raise UserError(f'{os.path.join(syn_dir, sub)} holds no PNG samples; generate samples first')
    if found['img'] != found['mask']:
        raise UserError(f'{syn_dir}: {len(found["img"])} images but {len(found["mask"])} masks with matching names; '
                        f'regenerate the synthetic data')
    if len(found['img']) < 2:
        raise UserError(f'{syn_dir} holds one pair; the train/val split needs at least 2')
    return [(os.path.join(syn_dir, 'img', n), os.path.join(syn_dir, 'mask', n)) for n in found['img']]


def split_pairs(pairs):
    """The original's split: by sorted order, not at random (fine for i.i.d. generator samples)."""
    n_train = int(0.9 * len(pairs))
    return pairs[:n_train], pairs[n_train:]


def load_pairs(pairs, image_size, mask_size, desc='load'):
    """Decode pairs once into memory: images uint8 [N, 3, S, S] and masks bool [N, M, M] (converted per batch).

    PIL bilinear (antialiased) resizes, as the original's torchvision Resize; masks are thresholded after the resize
    (> 127: alpha >= 0.5 at native size, the soft mask > 0.5 after a resize).
    """
    images = np.empty((len(pairs), 3, image_size, image_size), np.uint8)
    masks = np.empty((len(pairs), mask_size, mask_size), bool)
    decoded = ordered_map(lambda i: read_pair(pairs[i], image_size, mask_size), len(pairs))
    for i, (image, mask) in enumerate(progress(decoded, total=len(pairs), desc=desc)):
        images[i], masks[i] = image, mask
    return torch.from_numpy(images), torch.from_numpy(masks)


def layer_paths(pair):
    """The background and foreground layers written beside a generator sample's img/ and mask/ files."""
    image_path, _ = pair
    folder, name = os.path.split(image_path)
    root = os.path.dirname(folder)
    return os.path.join(root, 'bg', name), os.path.join(root, 'fg', name)


def read_layers(pair, size):
    """bg, fg uint8 [3, S, S] and the soft mask uint8 [1, S, S] (255 alpha) of one generator sample."""
    _, mask_path = pair
    bg_path, fg_path = layer_paths(pair)
    for path in (bg_path, fg_path):
        if not os.path.isfile(path):
            raise UserError(f'{path} does not exist: --reshape re-composites the layers of a generator\'s samples '
                            f'(bg/, fg/, mask/); generate them with generate_segmentation_samples.py, or drop --reshape')
    mask = open_image(mask_path, mask_path).convert('L')
    box = center_square(*mask.size)
    return (to_chw(crop_resize(read_rgb(bg_path, bg_path), box, size)),
            to_chw(crop_resize(read_rgb(fg_path, fg_path), box, size)),
            np.asarray(crop_resize(mask, box, size), np.uint8)[None])


def load_layers(pairs, size, desc='load layers'):
    """Decode the layers of generator samples once into memory: bg, fg uint8 [N, 3, S, S], soft masks [N, 1, S, S]."""
    out = [np.empty((len(pairs), c, size, size), np.uint8) for c in (3, 3, 1)]
    decoded = ordered_map(lambda i: read_layers(pairs[i], size), len(pairs))
    for i, layers in enumerate(progress(decoded, total=len(pairs), desc=desc)):
        for dest, layer in zip(out, layers):
            dest[i] = layer
    return tuple(torch.from_numpy(a) for a in out)


def reshaped_batch(layers, idx, strength, generator):
    """A training batch re-composited from bent foregrounds (seg_augment.reshape_foreground): image, int64 mask."""
    bg, fg, mask = layers
    image, soft = reshape_foreground(to_float(bg[idx]), to_float(fg[idx]), mask[idx].float() / 255, strength,
                                     generator)
    return image, (soft[:, 0] > 0.5).long()


def batches(images_u8, masks, batch):
    """In-order (float image, int64 mask) batches of in-memory pairs."""
    for i in range(0, len(images_u8), batch):
        yield to_float(images_u8[i:i + batch]), masks[i:i + batch].long()


def generator_for(seed, stream, index=0):
    """A CPU generator determined by (seed, stream, index), so no draw depends on how many came before it."""
    state = np.random.SeedSequence([seed, stream, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class EpochSampler:
    """Batch indices for iteration `it`: a seeded permutation per epoch, read as one endless stream."""

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch, self.perm = n, seed, None, None

    def _perm(self, epoch):
        if epoch != self.epoch:
            self.epoch, self.perm = epoch, torch.randperm(self.n, generator=generator_for(self.seed, 0, epoch))
        return self.perm

    def indices(self, it, batch):
        pos = torch.arange(it * batch, (it + 1) * batch)
        epoch = pos // self.n
        return torch.cat([self._perm(int(e))[pos[epoch == e] % self.n] for e in epoch.unique()])


# --------------------------------------------------------------------------------------------------------------------
# Prediction, scoring and pictures.


def predict(net, images, out_size):
    """Argmax labels [B, H, W] at out_size (int or (H, W)); logits are upsampled bilinearly when sizes differ."""
    logits = net(images)
    out_size = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
    if logits.shape[-2:] != out_size:
        logits = F.interpolate(logits, size=out_size, mode='bilinear', align_corners=False)
    return logits.argmax(dim=1)


@torch.no_grad()
def evaluate(net, loader, score_size, device, keep=GRID_CELLS):
    """Score `net` (eval mode: BN running stats) on (image, mask) batches -> (results, first `keep` (x, pred, gt))."""
    was_training = net.training
    net.eval()
    meter, kept = SegmentationMeter(), []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        pred = predict(net, x, score_size)
        meter.update(pred, y)
        if sum(len(k[0]) for k in kept) < keep:
            kept.append((x.cpu(), pred.cpu(), y.cpu()))
    net.train(was_training)
    kept = [torch.cat(t)[:keep] for t in zip(*kept)]
    return meter.result(), kept


def save_grid(path, columns, cells_per_row=GRID_COLUMNS):
    """PNG of cells, cells_per_row across; each cell shows one tile from every column side by side.

    columns: images float [N, 3, h, w] in [-1, 1] or masks int [N, H, W] in {0, 1}; all are shown at the largest size.
    """
    size = max(c.shape[-1] for c in columns)
    tiles = np.stack([visualize.to_uint8(F.interpolate(c.float() if c.ndim == 4 else c[:, None].float(), size=size),
                                         (-1, 1) if c.ndim == 4 else (0, 1)) for c in columns], axis=1)
    visualize.save_grid(tiles.reshape(-1, *tiles.shape[2:]), path, cols=len(columns) * min(cells_per_row, len(tiles)))


# --------------------------------------------------------------------------------------------------------------------
# Run-directory files.


def snapshot_name(it):
    return f'network-snapshot-{it:06d}.pth'


def save_checkpoint(path, net, opt, cur_iter):
    with dnnlib.util.atomic_write(path) as f:
        torch.save(dict(model=net.state_dict(), opt=opt.state_dict(), cur_iter=cur_iter), f)


def load_segmenter(path, device='cpu'):
    """A UNet in eval mode from a segmentation checkpoint (`network-snapshot-*.pth`)."""
    if not os.path.isfile(path):
        raise UserError(f'checkpoint {path} does not exist; pass a network-snapshot-*.pth from a segmentation run')
    ckpt = files.load(path, 'segmentation checkpoint')
    if not isinstance(ckpt, dict) or 'model' not in ckpt:
        raise UserError(f'{path} is not a segmentation checkpoint (no "model" entry); use a network-snapshot-*.pth')
    net = UNet(width=ckpt['model']['inc.0.weight'].shape[0])  # The width is the first convolution's output count.
    net.load_state_dict(ckpt['model'])
    return net.to(device).eval()


def best_val(records):
    """The val record with the highest dataset-level foreground IoU (ties -> the earliest)."""
    return max(records, key=lambda r: r['results']['IoU'])


def metric_record(metric, results, seconds, snapshot, **extra):
    return dict(results=results, metric=metric, **extra, total_time=seconds,
                total_time_str=dnnlib.util.format_time(seconds), snapshot_pth=snapshot, timestamp=time.time())


def tick_iters(iters):
    """Iterations per tick (stats line): TICK, shortened so that even a short run has at least two ticks."""
    return min(TICK, max(1, iters // 2))


def validation_iters(iters):
    """Iterations that validate and checkpoint: at the first tick, then every VAL_INTERVAL, and at the end.

    The default 6000 gives the original's 20, 1020, ..., 5020, 6000. Shorter runs shrink the interval to about
    iters/6 (at least one tick), so they also validate ~7 times: 600 -> 20, 120, ..., 520, 600; 10 -> 5, 10.
    """
    tick = tick_iters(iters)
    interval = min(VAL_INTERVAL, max(tick, iters // 6))
    return sorted(set(range(tick, iters, interval)) | {iters})


# --------------------------------------------------------------------------------------------------------------------
# The run.


def check_real_data(real_data, data_root=None):
    """Reject what datasets.load_test_set would reject, without decoding anything: fail before long work."""
    if real_data in drc.FOLDERS:
        drc.dataset_dir(real_data, datasets.resolve_data_root(data_root))
    elif not datasets.is_builtin(real_data) and not is_pairs_folder(real_data):
        raise UserError(f'unknown real data {real_data!r}; use cub, dog, car, {", ".join(datasets.BUILTIN)} or a folder '
                        f'with images/ and masks/')


def run_settings(syn_dir, real_data, input_size, score_size, aug='color', iters=6000, batch=BATCH, seed=0,
                 data_root=None, width=64, reshape=0.0, self_train_data=None, self_train_rounds=0):
    """What the numbers of a segmentation run depend on, the content of its data included (digests of file names,
    sizes and mtimes): a run is reused or resumed only for the same settings. syn_dir=None leaves the synthetic
    pairs out (a re-test does not read them). width is the U-Net's; reshape the strength of the bent foregrounds;
    self_train_data the unlabelled images of the self-training rounds (a data set name or path)."""
    named = datasets.is_builtin(real_data) or real_data in drc.FOLDERS
    settings = dict(real_data=real_data if named else os.path.abspath(real_data),
                    real_digest=datasets.test_set_digest(real_data, data_root), input_size=input_size,
                    score_size=score_size, aug=aug, iters=iters, batch=batch, seed=seed,
                    unet_width=width, reshape=float(reshape))
    if self_train_rounds:  # Recorded only when used, so the runs made before the option still match.
        settings.update(self_train=_data_name(self_train_data), self_train_rounds=int(self_train_rounds))
    if syn_dir is not None:
        pairs = list_pairs(syn_dir)
        settings.update(syn_dir=os.path.abspath(syn_dir),
                        syn_digest=datasets.files_digest(syn_dir, [os.path.relpath(p, syn_dir) for pair in pairs
                                                                   for p in pair]))
    return settings


def _data_name(data):
    """A data set as recorded: its name, or the absolute path of a folder or zip."""
    return data if data is None or data in datasets.BUILTIN or data in drc.FOLDERS else os.path.abspath(data)


def _resume_point(run_dir, net, opt):
    """Load the newest checkpoint of run_dir (if any) and drop log records written after it."""
    ckpts = sorted(glob.glob(os.path.join(run_dir, 'network-snapshot-*.pth')))
    start = 0
    if ckpts:
        ckpt = files.load(ckpts[-1], 'segmentation checkpoint')
        net.load_state_dict(ckpt['model'])
        opt.load_state_dict(ckpt['opt'])
        start = ckpt['cur_iter']
    for name in ('metric-val.jsonl', 'stats.jsonl'):  # A crash can land between a log line and its checkpoint.
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            write_jsonl(path, [r for r in read_jsonl(path) if r['iter'] <= start])
    return start


def _prune_checkpoints(run_dir, keep_iters):
    for path in glob.glob(os.path.join(run_dir, 'network-snapshot-*.pth')):
        if os.path.basename(path) not in {snapshot_name(i) for i in keep_iters}:
            os.remove(path)


def train_step(net, opt, pipe, images, labels, generator=None):
    """One optimisation step: augment the pair, pixel-mean cross-entropy over the labelled pixels (self_train.UNSURE
    ones are skipped), Adam. Returns the detached loss."""
    num_classes = 3 if bool((labels == self_train.UNSURE).any()) else 2
    images, labels = augment_pair(pipe, images, labels, generator, num_classes)
    loss = F.cross_entropy(net(images), labels, ignore_index=self_train.UNSURE)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def schedule(iters, rounds):
    """(total iterations, the iterations that validate and checkpoint): the synthetic phase's, then every round end."""
    total = self_train.total_iters(iters, rounds)
    return total, sorted(set(validation_iters(iters)) | set(self_train.round_starts(iters, rounds)[1:]) | {total})


def train(net, opt, run_dir, train_data, val_data, start, o, device, real_images=None):
    """Train from iteration `start` to the schedule's end, validating and checkpointing on the schedule. With
    o.self_train_rounds (recorded only when used), the rounds after the synthetic phase mix in real_images (uint8)
    with their pseudo-labels."""
    train_data = [t.to(device) for t in train_data]  # (images, masks), or with o.reshape (bg, fg, soft masks).

    def batch_at(idx, generator, reshape=o.reshape):
        if o.reshape:
            return reshaped_batch(train_data, idx, reshape, generator)
        return to_float(train_data[0][idx]), train_data[1][idx].long()

    pipe = AugmentPipe(**PRESETS[o.aug])
    sampler = EpochSampler(len(train_data[0]), o.seed)
    n_rounds = o.get('self_train_rounds', 0)
    total, val_at = schedule(o.iters, n_rounds)
    rounds = self_train.round_starts(o.iters, n_rounds)
    tick = tick_iters(o.iters)
    labels = None

    if start == 0:
        idx = torch.arange(min(GRID_CELLS, len(train_data[0])), device=device)
        drawn = batch_at(idx, generator_for(o.seed, 4), reshape=0.0)  # The samples as drawn, then as trained on.
        trained = augment_pair(pipe, *batch_at(idx, generator_for(o.seed, 3)), generator_for(o.seed, 2))
        save_grid(os.path.join(run_dir, 'augment.png'), [t.cpu() for t in (*drawn, *trained)])

    net.train()
    tick_loss, tick_start, tick_count = torch.zeros((), device=device), time.time(), 0
    bar = progress(range(start, total), initial=start, total=total, desc='train')
    for it in bar:
        fault_point('unet')
        if it in rounds:  # Every round starts at a checkpoint, so a resumed run relabels with the same net.
            real_images = real_images.to(device)
            labels = self_train.pseudo_labels(net, real_images)
            tqdm.write(f'Self-training round {rounds.index(it) + 1}/{len(rounds)} from iteration {it}: pseudo-labels '
                       f'cover {float((labels == 1).float().mean()):.3f} of the pixels as foreground, '
                       f'{float((labels == self_train.UNSURE).float().mean()):.3f} unsure (ignored)')
        idx = sampler.indices(it, o.batch).to(device)
        if labels is None:
            x, y = batch_at(idx, generator_for(o.seed, 3, it))
        else:  # Half synthetic, half real.
            half = (o.batch + 1) // 2
            x, y = self_train.mixed_batch(batch_at(idx[:half], generator_for(o.seed, 3, it)), real_images, labels,
                                          o.batch - half, generator_for(o.seed, 5, it))
        tick_loss += train_step(net, opt, pipe, x, y, generator_for(o.seed, 1, it))
        tick_count += 1
        cur = it + 1

        if cur % tick == 0 or cur == total:
            sec = (time.time() - tick_start) / tick_count
            stats = dict(iter=cur, loss=float(tick_loss) / tick_count, sec_per_iter=sec, timestamp=time.time())
            append_jsonl(os.path.join(run_dir, 'stats.jsonl'), [stats])
            bar.set_postfix(loss=f'{stats["loss"]:.4f}')
            tick_loss.zero_()
            tick_start, tick_count = time.time(), 0

        if cur in val_at:
            t0 = time.time()
            results, (vx, vp, vy) = evaluate(net, batches(*val_data, EVAL_BATCH), o.score_size, device)
            record = metric_record('val', results, time.time() - t0, snapshot_name(cur), iter=cur)
            tqdm.write(json.dumps(record))  # Through stdout, hence into log.txt.
            append_jsonl(os.path.join(run_dir, 'metric-val.jsonl'), [record])
            save_grid(os.path.join(run_dir, f'seg-train_{cur:06d}.png'), [vx, vp, vy])
            save_checkpoint(os.path.join(run_dir, snapshot_name(cur)), net, opt, cur)
            if not o.keep_all:
                best = best_val(read_jsonl(os.path.join(run_dir, 'metric-val.jsonl')))['iter']
                _prune_checkpoints(run_dir, {best, cur})
    bar.close()


def _check_options(aug, smallest_size, reshape, self_train_data, self_train_rounds):
    if aug not in PRESETS:
        raise UserError(f'unknown augmentation {aug!r}; use one of {", ".join(PRESETS)}')
    if smallest_size < 1:
        raise UserError('iters, batch and the image sizes must be positive')
    if not 0 <= reshape <= 1:
        raise UserError(f'--reshape must be in [0, 1] (the displacement SD in half image widths), got {reshape}')
    if self_train_rounds < 0 or (self_train_rounds and not self_train_data):
        raise UserError('self-training needs its unlabelled images (--self-train DATA) and a round count of at least 1')


def score_on_test_set(net, run_dir, test_set, score_size, device, workers, last=False):
    """Test the best validated checkpoint (with `last`, the last one) on the real test set, logging the record and
    the grid; returns (its iteration, the scores)."""
    val_records = read_jsonl(os.path.join(run_dir, 'metric-val.jsonl'))
    if not val_records:
        raise UserError(f'{run_dir} has no validation records; train first (drop --test-only)')
    chosen = val_records[-1] if last else best_val(val_records)
    net.load_state_dict(files.load(os.path.join(run_dir, chosen['snapshot_pth']), 'segmentation checkpoint')['model'])
    loader = torch.utils.data.DataLoader(test_set, batch_size=EVAL_BATCH, num_workers=workers)
    t0 = time.time()
    results, (tx, tp, ty) = evaluate(net, loader, score_size, device)
    record = metric_record('test', results, time.time() - t0, chosen['snapshot_pth'])
    print(json.dumps(record))
    append_jsonl(os.path.join(run_dir, 'metric-test.jsonl'), [record])
    save_grid(os.path.join(run_dir, 'seg-test.png'), [tx, tp, ty])
    return chosen['iter'], results


def run_segmentation(syn_dir, real_data, run_dir, input_size=64, score_size=64, aug='color', iters=6000, batch=BATCH,
                     seed=0, data_root=None, device=None, keep_all=False, resume=True, test_only=False, workers=3,
                     width=64, reshape=0.0, self_train_data=None, self_train_rounds=0):
    """Train, select and test the segmenter; returns the five test scores (segmentation.py) plus best_iter.

    resume=True returns a finished run's results.json as is, and continues an unfinished run from its newest
    checkpoint, both only if the run was made with the same settings and data (run_settings). test_only=True
    re-tests the best validated checkpoint without training (on the same real data). width is the
    U-Net's (64 is the original's). reshape > 0 trains on the generator's layers re-composited with bent
    foregrounds (seg_augment.reshape_foreground, not in the original); validation keeps the samples as drawn.
    self_train_rounds > 0 follows the `iters` synthetic iterations with that many self-training rounds on the
    unlabelled images `self_train_data` (metrics/self_train.py, not in the original); the last checkpoint is tested,
    since the synthetic val split cannot judge how well the net has adapted to real images.
    """
    _check_options(aug, min(iters, batch, input_size, score_size), reshape, self_train_data, self_train_rounds)
    check_real_data(real_data, data_root)
    results_path = os.path.join(run_dir, 'results.json')
    has_state = bool(glob.glob(os.path.join(run_dir, 'network-snapshot-*.pth'))) or \
        os.path.isfile(os.path.join(run_dir, 'metric-val.jsonl')) or os.path.isfile(results_path)
    if has_state and not (resume or test_only):
        raise UserError(f'{run_dir} already holds a segmentation run; resume it or choose a new run dir')
    if test_only and not has_state:
        raise UserError(f'{run_dir} has no validated checkpoints to test; train first (drop --test-only)')
    # A re-test tests the checkpoints, without retraining: the synthetic pairs need not be there any more.
    settings = run_settings(None if test_only else syn_dir, real_data, input_size, score_size, aug, iters, batch,
                            seed, data_root, width, reshape, self_train_data, self_train_rounds)
    if has_state:
        differ = settings_differ(recorded_settings(run_dir), settings)
        if differ:
            raise UserError(f'{run_dir} was made with other settings or data ({"; ".join(differ)}); resume it with '
                            f'the same settings and data, or choose a new run dir')
    if resume and not test_only and os.path.isfile(results_path):
        return read_json(results_path)
    pairs = None if test_only else list_pairs(syn_dir)
    real_images = None
    if self_train_rounds and not test_only:  # Decoded (and checked) before anything is written; cached as GAN data.
        real_images = self_train.load_images(self_train_data, input_size, data_root)
    test_set = datasets.load_test_set(real_data, input_size, mask_size=score_size, data_root=data_root)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    torch.backends.cudnn.benchmark = True  # As the original: fastest kernels, not bit-reproducible on GPU.

    os.makedirs(run_dir, exist_ok=True)
    with dnnlib.util.Logger(os.path.join(run_dir, 'log.txt')):
        torch.manual_seed(seed)
        net = UNet(width=width).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
        start = 0 if test_only else _resume_point(run_dir, net, opt)
        if not test_only and start < self_train.total_iters(iters, self_train_rounds):
            train_pairs, val_pairs = split_pairs(pairs)
            options = dnnlib.EasyDict(
                settings, data_root=data_root, device=str(device), keep_all=keep_all,
                num_train=len(train_pairs), num_val=len(val_pairs), num_test=len(test_set),
                val_iters=validation_iters(iters), start_iter=start, torch=torch.__version__)
            print(json.dumps(options, indent=2))
            write_json(os.path.join(run_dir, 'training_options.json'), options)
            train_data = (load_layers(train_pairs, input_size, 'load train layers') if reshape else
                          load_pairs(train_pairs, input_size, input_size, 'load train'))
            val_data = load_pairs(val_pairs, input_size, score_size, 'load val')
            print(f'Train/val pairs: {len(train_pairs)}/{len(val_pairs)} (sorted order); '
                  f'test images: {len(test_set)}; device: {device}'
                  + (f'; unlabelled images for self-training: {len(real_images)}' if self_train_rounds else ''))
            train(net, opt, run_dir, train_data, val_data, start, options, device, real_images)

        tested, results = score_on_test_set(net, run_dir, test_set, score_size, device, workers,
                                            last=bool(self_train_rounds))
        results = dict(results, best_iter=tested, unet_width=width, reshape=float(reshape))
        if self_train_rounds:
            results.update(self_train=settings['self_train'], self_train_rounds=int(self_train_rounds))
        write_json(results_path, results)
    return results


# --------------------------------------------------------------------------------------------------------------------
# The command line: eval_segmentation.py (E64) and eval_segmentation_eval128.py (E128) differ only in defaults.


def run_desc(real_data, aug, input_size, score_size, reshape=0.0, self_train_rounds=0):
    """Run-dir suffix: '<data>-<aug>_aug-<S>' for E64, '<data>-<aug>_aug-eval128' for E128; '-reshape<r>' and
    '-self<rounds>' added."""
    name = os.path.basename(os.path.normpath(real_data)).replace(':', '-')  # 'cub', 'collage-val', a folder's name
    if input_size == score_size:
        size = f'{score_size}'
    else:
        size = f'eval{score_size}' if input_size == 64 else f'in{input_size}-eval{score_size}'
    return (f'{name}-{aug}_aug-{size}' + (f'-reshape{reshape:g}' if reshape else '')
            + (f'-self{self_train_rounds}' if self_train_rounds else ''))


def make_cli(default_scale, default_input_size, help_text):
    """Build the click command of one protocol; `default_input_size=None` means 'the same as --scale'."""
    @click.command(help=help_text)
    @click.option('--syn-data', required=True, metavar='DIR', help='Synthetic pairs: DIR/img/*.png + DIR/mask/*.png')
    @click.option('--real-data', required=True, metavar='DATA',
                  help='cub|dog|car|synthetic|collage, or a folder with images/ + masks/')
    @click.option('--data-root', metavar='DIR',
                  help='Folder holding the DRC birds/ dogs/ cars/  [default: the datasets default]')
    @click.option('--aug', type=click.Choice(list(PRESETS)), default='color', show_default=True,
                  help='Training augmentation')
    @click.option('--reshape', type=click.FloatRange(0, 1), default=0.0, show_default=True, metavar='SD',
                  help="Train on the samples' layers re-composited with the foreground bent by a smooth random field "
                       "of this SD (0.15 suits 32 px); 0: the original's pairs")
    @click.option('--self-train', 'self_train_data', metavar='DATA',
                  help='Then self-train on these unlabelled images (the GAN\'s training data: synthetic|collage|'
                       'cub|dog|car, an image folder or a zip) with the net\'s own confident labels; the last net is '
                       'tested')
    @click.option('--self-train-rounds', type=click.IntRange(min=1), default=1, show_default=True,
                  help='Self-training rounds of --iters/2 iterations each, relabelled at the start of each')
    @click.option('--scale', type=click.IntRange(min=1), default=default_scale, show_default=True,
                  help='Resolution at which masks are scored')
    @click.option('--input-size', type=click.IntRange(min=1), default=default_input_size,
                  show_default=default_input_size or 'same as --scale', help='U-Net input resolution')
    @click.option('--seed', type=int, default=0, show_default=True, help='Random seed')
    @click.option('--iters', type=click.IntRange(min=1), default=6000, show_default=True, help='Training iterations')
    @click.option('--batch', type=click.IntRange(min=1), default=BATCH, show_default=True, help='Batch size')
    @click.option('--unet-width', type=click.IntRange(min=4), default=64, show_default=True,
                  help="U-Net channels at full resolution (64: the original's; 16-32 for a quick CPU run)")
    @click.option('--outdir', metavar='DIR', help='Where the numbered run dir is created  [default: --syn-data]')
    @click.option('--resume-from', metavar='DIR', help='Continue the run in DIR from its newest checkpoint')
    @click.option('--test-only', is_flag=True, help='Only re-test the best checkpoint of --resume-from')
    @click.option('--keep-all', is_flag=True, help='Keep every checkpoint, not only the best and the last')
    @click.option('--device', metavar='DEV', help='torch device  [default: cuda if available, else cpu]')
    @click.option('--workers', type=click.IntRange(min=0), default=3, show_default=True, help='Test-set loader workers')
    @click.option('-n', '--dry-run', is_flag=True, help='Print the options and exit')
    @dnnlib.util.cli_errors
    def main(syn_data, real_data, data_root, aug, reshape, self_train_data, self_train_rounds, scale, input_size, seed,
             iters, batch, unet_width, outdir, resume_from, test_only, keep_all, device, workers, dry_run):
        input_size = input_size or scale
        rounds = self_train_rounds if self_train_data else 0
        if test_only and not resume_from:
            raise UserError('--test-only re-tests an existing run; pass its directory with --resume-from')
        if resume_from:
            if not glob.glob(os.path.join(resume_from, 'network-snapshot-*.pth')):
                raise UserError(f'{resume_from} holds no network-snapshot-*.pth to resume from; check --resume-from')
            run_dir = resume_from
        else:
            run_dir = dnnlib.util.next_run_dir(outdir or syn_data,
                                               run_desc(real_data, aug, input_size, scale, reshape, rounds))
        print(f'Run dir: {run_dir}  (input {input_size}, scored at {scale}, aug {aug}'
              f'{f", reshape {reshape:g}" if reshape else ""}, {iters} iters, batch {batch}'
              f'{f", then {rounds} self-training round(s) on {self_train_data}" if rounds else ""})')
        if dry_run:
            return
        results = run_segmentation(syn_data, real_data, run_dir, input_size=input_size, score_size=scale, aug=aug,
                                   iters=iters, batch=batch, seed=seed, data_root=data_root, device=device,
                                   keep_all=keep_all, resume=True, test_only=test_only, workers=workers,
                                   width=unet_width, reshape=reshape, self_train_data=self_train_data,
                                   self_train_rounds=rounds)
        print(json.dumps(results))
    return main
