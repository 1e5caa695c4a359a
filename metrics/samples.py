"""Synthetic layer samples of a generator snapshot: snapshot choice and resumable generation.

A sample folder holds `{bg,fg,mask,fg*mask,img}/000001.png ...` (8-bit RGB at the generator resolution; fg*mask is
the masked foreground on white, as G(..., return_layers=True) gives it), the original's `input.pkl` {z, c,
truncation_psi, noise_mode, seed} and a byte copy of the snapshot. Differences from the original, all fixes:
- `pkl_idx` picks the snapshot whose kimg equals it; the original matched str(pkl_idx) as a substring of the file
  name, so 20 picked 000200. `topk` keeps the original's meaning: a kimg ceiling.
- z is drawn from an explicitly seeded generator in one [n, z_dim] draw, so samples do not depend on the batch size
  or on a resume. noise_mode='random' still draws its noise from torch's global RNG.
- An existing folder is completed, never deleted (the original rmtree'd it, losing evaluations stored inside).
  `generation.json` (written first) records the settings so a resume cannot mix two settings, every PNG
  is renamed into place whole, and `input.pkl` is written last as the completion marker.
- Before writing, the masks of the first PROBE_SAMPLES latents are checked (training/mask_stats.py): polarity and
  shape diversity, printed with any warning and stored in generation.json. `polarity` decides what is written:
  'keep' writes the layers as generated; 'flip' writes mask -> 1 - mask with fg and bg swapped (the same
  composite); 'auto' (the default) flips when the check finds the masks inverted (most samples hold more mask on
  the border than in the centre), so that a run which learned the decomposition the wrong way round still yields
  object masks. A run whose masks are the right way round is never changed by 'auto'.
"""
import collections
import concurrent.futures
import filecmp
import glob
import math
import os
import pickle
import re
import shutil
import time

import PIL.Image
import torch

import dnnlib
from dnnlib.util import UserError, read_json, read_jsonl, write_json
from metrics.seg_eval import progress
from training import checkpoint, mask_stats
from training.networks import to_device

LAYERS = ('bg', 'fg', 'mask', 'fg*mask', 'img')
NOISE_MODES = ('const', 'random', 'none')
POLARITIES = ('auto', 'keep', 'flip')
PROBE_SAMPLES = 512  # latents whose masks decide the polarity and measure the shape diversity
SETTINGS_NAME = 'generation.json'
INPUT_NAME = 'input.pkl'
_SNAPSHOT_RE = re.compile(r'network-snapshot-(\d+)\.(?:pt|pkl)$')

# --------------------------------------------------------------------------------------------------------------------
# Snapshot choice.


def snapshot_kimg(path):
    """kimg from a `network-snapshot-XXXXXX.{pt,pkl}` name, else None."""
    m = _SNAPSHOT_RE.search(os.path.basename(path))
    return int(m.group(1)) if m else None


def list_snapshots(run_dir):
    """{kimg: path} of the run's network snapshots."""
    paths = glob.glob(os.path.join(run_dir, 'network-snapshot-*.pt')) + \
        glob.glob(os.path.join(run_dir, 'network-snapshot-*.pkl'))
    return {snapshot_kimg(p): p for p in sorted(paths) if snapshot_kimg(p) is not None}


def read_metric_file(path):
    """Records of a `metric-<name>.jsonl`: dicts with kimg, results, sigma and snapshot (relative to its dir)."""
    records = []
    for number, rec in enumerate(read_jsonl(path), 1):
        try:
            snapshot, results = rec['snapshot_pkl'], dict(rec['results'])
        except (KeyError, TypeError, ValueError):
            raise UserError(f'{path}: record {number} is not a metric record (results + snapshot_pkl); '
                            f'fix or delete that line') from None
        kimg = snapshot_kimg(snapshot or '')
        if kimg is None:
            raise UserError(f'{path}: record {number}: snapshot_pkl {snapshot!r} is not a network-snapshot-<kimg> '
                            f'name; fix or delete that line')
        records.append(dict(kimg=kimg, results=results, sigma=rec.get('sigma'), snapshot=snapshot))
    return records


def find_snapshot(path, metric='fid10k_full', topk=None, pkl_idx=None, sigma=None):
    """(snapshot path, kimg): a snapshot file as is, or the run's snapshot with the lowest `metric`.

    In a run dir: keep the lines of metric-<metric>.jsonl with that `sigma` (if given), with kimg <= `topk` (if
    given) or kimg == `pkl_idx` (if given), and take the lowest value (ties -> the first line; kimg 0 included).
    kimg is None for a file whose name and contents do not tell it.
    """
    if topk is not None and pkl_idx is not None:
        raise UserError('--pkl_idx picks one snapshot and --topk caps the search; pass only one of them')
    if os.path.isfile(path):
        if (topk, pkl_idx, sigma) != (None, None, None):
            raise UserError(f'{path} is a snapshot file; --pkl_idx/--topk/--sigma choose within a run, so pass the '
                            f'run directory instead')
        kimg = snapshot_kimg(path)
        if kimg is None:
            kimg = checkpoint.load_snapshot(path).get('extra', {}).get('kimg')
        return path, kimg
    if not os.path.isdir(path):
        raise UserError(f'{path} does not exist; pass a training run directory or a network-snapshot file')

    jsonl = os.path.join(path, f'metric-{metric}.jsonl')
    if not os.path.isfile(jsonl):
        if list_snapshots(path):
            raise UserError(f'{path} has snapshots but no metric-{metric}.jsonl to choose among them; pass '
                            f'--network=<snapshot file>, or score them first: python calc_metrics.py '
                            f'--network={path} --metrics={metric} --data=<training data>')
        raise UserError(f'{path} has no metric-{metric}.jsonl; train with --metrics={metric} or pass '
                        f'--network=<snapshot file>')
    records = read_metric_file(jsonl)
    if sigma is not None:
        records = [r for r in records if r['sigma'] is not None and float(r['sigma']) == float(sigma)]
    if topk is not None:
        records = [r for r in records if r['kimg'] <= topk]
    if pkl_idx is not None:
        records = [r for r in records if r['kimg'] == pkl_idx]
    if not records:
        scored = sorted({r['kimg'] for r in read_metric_file(jsonl)})
        raise UserError(f'no snapshot in {jsonl} matches sigma={sigma} topk={topk} pkl_idx={pkl_idx} '
                        f'(scored kimg: {", ".join(map(str, scored)) or "none"}); relax the filters')
    for r in records:
        if metric not in r['results']:
            raise UserError(f'{jsonl} has no results.{metric} at kimg {r["kimg"]}; choose another --metric')

    def value(r):  # A NaN score never wins.
        v = float(r['results'][metric])
        return math.inf if math.isnan(v) else v

    best = min(records, key=value)
    snapshot = os.path.join(path, best['snapshot'])
    if not os.path.isfile(snapshot):
        raise UserError(f'{snapshot} ({metric} {best["results"][metric]} at kimg {best["kimg"]}) is missing; '
                        f'restore it or choose another with --pkl_idx')
    return snapshot, best['kimg']


def samples_dir_name(snapshot_path, kimg):
    """`synthetic_data-<kimg6>` (the original's name), or `synthetic_data-<file stem>` when kimg is unknown."""
    tag = f'{kimg:06d}' if kimg is not None else os.path.splitext(os.path.basename(snapshot_path))[0]
    return f'synthetic_data-{tag}'

# --------------------------------------------------------------------------------------------------------------------
# Quantisation, exactly as the original.


def quantize(x):
    """Float [N, C, H, W] -> uint8 [N, H, W, C]: uint8(clamp(127.5 x + 128, 0, 255)); the cast truncates."""
    return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def quantize_mask(mask):
    """alpha [N, 1, H, W] in [0, 1] -> uint8 [N, H, W, 3] = round(255 alpha), so p >= 128 <=> alpha >= 0.5."""
    return quantize(2 * mask - 1).expand(-1, -1, -1, 3)


def png_path(outdir, layer, index):
    """1-based, 6-digit names, as the original."""
    return os.path.join(outdir, layer, f'{index + 1:06d}.png')


def save_png(array, path):
    with dnnlib.util.atomic_write(path) as f:  # A kill never leaves a truncated PNG behind.
        PIL.Image.fromarray(array, 'RGB').save(f, format='PNG')

# --------------------------------------------------------------------------------------------------------------------
# Generation.


def _settings(n, seed, truncation_psi, noise_mode, polarity='auto'):
    """What a folder's samples depend on: all must match to reuse or resume it."""
    return dict(n=n, seed=seed, truncation_psi=float(truncation_psi), noise_mode=noise_mode, polarity=polarity)


def first_missing(outdir, n):
    """Index of the first sample that lacks any of its five PNGs (n when all are there)."""
    present = [set(os.listdir(os.path.join(outdir, layer))) if os.path.isdir(os.path.join(outdir, layer)) else set()
               for layer in LAYERS]
    return next((i for i in range(n) if any(f'{i + 1:06d}.png' not in names for names in present)), n)


def is_complete(outdir, n, seed=0, truncation_psi=1.0, noise_mode='const', polarity='auto'):
    """True when outdir holds all n samples made with these settings (input.pkl written, no PNG missing)."""
    settings = _settings(n, seed, truncation_psi, noise_mode, polarity)
    recorded = read_json(os.path.join(outdir, SETTINGS_NAME)) or {}
    return ({k: recorded.get(k) for k in settings} == settings and os.path.isfile(os.path.join(outdir, INPUT_NAME))
            and first_missing(outdir, n) == n)


def _prepare_outdir(outdir, snapshot_path, settings):
    """Check that outdir is empty or was started with the same settings and snapshot; record both if new."""
    copy = os.path.join(outdir, 'network-snapshot' + ('.pkl' if snapshot_path.endswith('.pkl') else '.pt'))
    recorded = read_json(os.path.join(outdir, SETTINGS_NAME))
    if recorded is None:
        foreign = os.path.isfile(os.path.join(outdir, INPUT_NAME)) or \
            any(glob.glob(os.path.join(glob.escape(outdir), glob.escape(layer), '*.png')) for layer in LAYERS)
        if foreign:
            raise UserError(f'{outdir} holds samples without a {SETTINGS_NAME} (another tool made them); '
                            f'pass another --outdir')
    else:
        diff = {k: recorded.get(k) for k in settings if recorded.get(k) != settings[k]}
        if diff:
            raise UserError(f'{outdir} holds samples made with {", ".join(f"{k}={v}" for k, v in diff.items())}; '
                            f'use the same settings to resume, or pass another --outdir')
        if os.path.isfile(copy) and not filecmp.cmp(snapshot_path, copy, shallow=False):
            raise UserError(f'{outdir} holds samples of another snapshot ({copy} differs from {snapshot_path}); '
                            f'pass another --outdir')
    if recorded is None or not os.path.isfile(copy):
        with open(snapshot_path, 'rb') as src, dnnlib.util.atomic_write(copy) as dst:
            shutil.copyfileobj(src, dst)
    if recorded is None:
        write_json(os.path.join(outdir, SETTINGS_NAME), dict(settings, snapshot=os.path.abspath(snapshot_path)))
    for layer in LAYERS:
        os.makedirs(os.path.join(outdir, layer), exist_ok=True)
        for tmp in glob.glob(os.path.join(glob.escape(outdir), glob.escape(layer), '.tmp-*')):
            os.remove(tmp)  # Half-written PNGs of a killed run: never samples, and they would confuse readers.


def flip_layers(layers):
    """The same composite with the roles swapped: mask -> 1 - mask, fg <-> bg ('fg*mask' on white, as forward)."""
    mask, fg = 1 - layers['mask'], layers['bg']
    return dict(layers, bg=layers['fg'], fg=fg, mask=mask, **{'fg*mask': (1 - mask) + mask * fg})


def check_polarity(G, z, polarity, device, truncation_psi=1.0, noise_mode='const', batch=64):
    """Check G's masks for z and decide the polarity: (summary as generated, summary as written, flip), printed."""
    with torch.no_grad():
        masks = torch.cat([G(zb.to(device), None, truncation_psi=truncation_psi, noise_mode=noise_mode,
                             return_layers=True)['mask'].cpu() for zb in z.split(batch)])
    summary = mask_stats.summarize(masks)
    flip = mask_stats.decide_flip(summary, polarity)
    print(f'Mask check ({len(z)} samples): area {summary["area"]:.3f}, centre {summary["centre"]:.2f}, border '
          f'{summary["border"]:.2f}, inverted {summary["inverted"]:.0%}, centred-shape IoU {summary["shape_iou"]:.2f}, '
          f'area SD {summary["area_sd"]:.3f}')
    for warning in mask_stats.warnings(summary, finished=True).values():
        print(f'WARNING: {warning}')
    if flip:
        print(f'Polarity {polarity}: writing the flipped decomposition (mask -> 1 - mask, fg <-> bg)')
    return summary, (mask_stats.summarize(1 - masks) if flip else summary), flip


def generate_samples(snapshot_path, outdir, n, seed=0, truncation_psi=1.0, noise_mode='const', batch=64,
                     device=None, polarity='auto'):
    """Write n layered samples of the snapshot's G_ema into outdir (resuming an unfinished folder); returns outdir."""
    if n < 1 or batch < 1:
        raise UserError(f'--n and --batch must be positive, got n={n} batch={batch}')
    if noise_mode not in NOISE_MODES:
        raise UserError(f'unknown noise mode {noise_mode!r}; use one of {", ".join(NOISE_MODES)}')
    if polarity not in POLARITIES:
        raise UserError(f'unknown polarity {polarity!r}; use one of {", ".join(POLARITIES)}')
    if not os.path.isfile(snapshot_path):
        raise UserError(f'snapshot {snapshot_path} does not exist; pass a network-snapshot file or a run directory')
    settings = _settings(n, seed, truncation_psi, noise_mode, polarity)
    complete = os.path.isfile(os.path.join(outdir, INPUT_NAME)) and first_missing(outdir, n) == n
    if not complete:  # The snapshot must load before anything is written.
        G = checkpoint.load_snapshot(snapshot_path).get('G_ema')
        if G is None:
            raise UserError(f'{snapshot_path} holds no G_ema; pass a training snapshot')
    os.makedirs(outdir, exist_ok=True)
    _prepare_outdir(outdir, snapshot_path, settings)
    if complete:
        print(f'Reusing {n} complete samples in {outdir}')
        return outdir
    start = first_missing(outdir, n)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    G = to_device(G, device)
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))  # One draw: batch-size independent.

    settings_path = os.path.join(outdir, SETTINGS_NAME)
    recorded = read_json(settings_path)
    if 'flipped' in recorded:  # A resumed folder keeps the decision its first samples were written with.
        flip = recorded['flipped']
    else:
        generated, written, flip = check_polarity(G, z[:PROBE_SAMPLES], polarity, device, truncation_psi, noise_mode,
                                                  batch)
        write_json(settings_path, dict(recorded, flipped=flip, mask_check=generated, mask_check_written=written))

    t0 = time.time()
    bar = progress(None, total=n, initial=start, desc='generate', unit='img')
    pending = collections.deque()  # PNG writes of the batches being encoded, oldest first.

    def finish_oldest():
        futures = pending.popleft()
        for f in futures:
            f.result()
        bar.update(len(futures) // len(LAYERS))

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # zlib runs without the GIL.
        for base in range(start, n, batch):
            with torch.no_grad():
                out = G(z[base:base + batch].to(device), None, truncation_psi=truncation_psi, noise_mode=noise_mode,
                        return_layers=True)
            if flip:
                out = flip_layers(out)
            images = {k: (quantize_mask(v) if k == 'mask' else quantize(v)).cpu().numpy() for k, v in out.items()}
            pending.append([pool.submit(save_png, images[layer][i], png_path(outdir, layer, base + i))
                            for i in range(len(images['img'])) for layer in LAYERS])
            if len(pending) > 2:  # Encode earlier batches while this one is made, with bounded memory.
                finish_oldest()
        while pending:
            finish_oldest()
    bar.close()
    with dnnlib.util.atomic_write(os.path.join(outdir, INPUT_NAME)) as f:  # Last: marks the folder complete.
        pickle.dump(dict(z=z.numpy(), c=None, truncation_psi=truncation_psi,
                         noise_mode=noise_mode, seed=seed), f)
    sec = time.time() - t0
    print(f'Generated {n - start} samples in {sec:.1f}s ({(n - start) / max(sec, 1e-9):.1f} img/s) into {outdir}')
    return outdir
