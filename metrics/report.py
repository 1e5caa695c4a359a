"""An offline HTML report of a training run: training curves, FID/KID, the latest image grids and the evaluations.

write_report(run_dir) writes <run>/report.html, with its plots in <run>/report/*.png. Images are linked by paths
relative to report.html, so the run dir can be copied or zipped as a whole; there is no JS and no external asset.
A partial run (training still going, no auto-test yet) gets a partial report: each missing piece is left out with a
one-line note, and an unreadable file only costs its own section.
"""
import glob
import html
import json
import math
import os
import re
import time
import urllib.parse

from matplotlib.figure import Figure  # No pyplot: no global backend state, Agg is used for PNG.

import dnnlib
from dnnlib.util import UserError, read_json, read_jsonl
from metrics import samples
from training import mask_stats

CURVES = (  # (panel title, stats.jsonl keys): one line per key.
    ('Generator loss', ('Loss/G/loss',)),
    ('Discriminator scores', ('Loss/scores/real', 'Loss/scores/fake')),
    ('Mask binarisation', ('Loss/G/loss_bin',)),
    ('Mask area (fraction of the image)', ('Loss/G/mask_area',)),
    ('Mask polarity (G_ema probes)', ('Masks/centre', 'Masks/border', 'Masks/inverted')),
    ('Shape diversity: centred-mask IoU (1 = one shape)', ('Masks/shape_iou',)),
    ('Size diversity: SD of the per-sample mask area', ('Masks/area_sd',)),
    ('ILS term', ('Loss/G/anti_leaking',)),
    ('ADA p', ('Progress/augment',)),
    ('ILS weight sigma', ('Progress/sigma',)),
)
GRIDS = ('reals', 'fakes', 'masks', 'layers', 'grads')
SEG_KEYS = ('DRC_IoU', 'DRC_DICE', 'IoU', 'mIoU', 'pACC', 'best_iter')
SAMPLE_DIRS = ('synthetic_data-*', os.path.join('auto_test', 'synthetic_data-*'))  # Manual and auto-test flows.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, UserError)
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; image-rendering: pixelated; } figure { display: inline-block; margin: .5em 1em .5em 0; }
figcaption, .note { color: #666; } pre { background: #f7f7f7; padding: .5em; overflow-x: auto; }
.warning { background: #fff3cd; border-left: 4px solid #d9822b; padding: .4em .8em; }
"""

# --------------------------------------------------------------------------------------------------------------------
# Reading and HTML helpers.


def _fmt(v):
    if isinstance(v, float):
        return f'{v:.4g}'
    return '&ndash;' if v is None else html.escape(str(v))


def _note(text):
    return f'<p class="note">{html.escape(text)}</p>\n'


def _table(header, rows):
    """header None: a key/value table without a header row."""
    head = '<tr>' + ''.join(f'<th>{html.escape(h)}</th>' for h in header) + '</tr>\n' if header else ''
    body = ''.join('<tr>' + ''.join(f'<td class="num">{_fmt(v)}</td>' if isinstance(v, (int, float)) else
                                    f'<td>{_fmt(v)}</td>' for v in row) + '</tr>\n' for row in rows)
    return f'<table>{head}{body}</table>\n'


def _image(run_dir, path, caption):
    url = urllib.parse.quote(os.path.relpath(path, run_dir).replace(os.sep, '/'))
    return (f'<figure><a href="{url}"><img src="{url}" alt="{html.escape(caption)}"></a>'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>\n')


def _find(run_dir, *parts):
    """Sorted matches of <run>/<sample dir>/<parts> for the manual and the auto-test sample folders."""
    return sorted(p for d in SAMPLE_DIRS for p in glob.glob(os.path.join(glob.escape(run_dir), d, *parts)))


def plot_panels(panels, path):
    """panels: [(title, [(label, xs, ys)])] -> one PNG of small line plots against kimg, three to a row."""
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.2 * rows), layout='constrained')
    for k, (title, lines) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        for label, xs, ys in lines:
            ax.plot(xs, ys, label=label, linewidth=1, marker='.' if len(xs) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel('kimg')
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize='small')
    with dnnlib.util.atomic_write(path) as f:
        fig.savefig(f, format='png', dpi=90)

# --------------------------------------------------------------------------------------------------------------------
# Sections: each returns an HTML fragment.


def section_options(run_dir, plot_dir):
    path = os.path.join(run_dir, 'training_options.json')
    if not os.path.isfile(path):
        return _note('No training_options.json.')
    text = json.dumps(read_json(path), indent=2)
    return f'<details><summary>training_options.json</summary><pre>{html.escape(text)}</pre></details>\n'


def section_training(run_dir, plot_dir):
    path = os.path.join(run_dir, 'stats.jsonl')
    if not os.path.isfile(path):
        return _note('No stats.jsonl yet (no training tick finished).')
    ticks = [r for r in read_jsonl(path) if 'Progress/kimg' in r]
    panels, absent = [], []
    for title, keys in CURVES:
        lines = []
        for key in keys:
            have = [r for r in ticks if key in r]
            if have:
                lines.append((key, [r['Progress/kimg']['mean'] for r in have], [r[key]['mean'] for r in have]))
        if lines:
            panels.append((title, lines))
        else:
            absent.append(title)
    if not panels:
        return _note('stats.jsonl holds no tick with training curves yet.')
    out = os.path.join(plot_dir, 'training_curves.png')
    plot_panels(panels, out)
    note = _note(f'Not in stats.jsonl: {", ".join(absent)}.') if absent else ''
    return _image(run_dir, out, f'Per-tick means over {len(ticks)} ticks') + note


def section_metrics(run_dir, plot_dir):
    files = sorted(glob.glob(os.path.join(glob.escape(run_dir), 'metric-*.jsonl')))
    if not files:
        return _note('No metric-*.jsonl (no snapshot was scored).')
    panels, rows = [], []
    for path in files:
        records = sorted(samples.read_metric_file(path), key=lambda r: r['kimg'])
        lines = []
        for key in sorted({k for r in records for k in r['results']}):
            points = [(r['kimg'], float(r['results'][key])) for r in records if key in r['results']]
            lines.append((key, [p[0] for p in points], [p[1] for p in points]))
            low = min(points, key=lambda p: (math.isnan(p[1]), p[1]))
            rows.append((key, low[1], low[0], points[-1][1], points[-1][0], len(points)))
        if lines:
            panels.append((os.path.basename(path)[len('metric-'):-len('.jsonl')], lines))
    if not panels:
        return _note('The metric files hold no records yet.')
    out = os.path.join(plot_dir, 'metrics.png')
    plot_panels(panels, out)
    return _table(('metric', 'lowest', 'at kimg', 'latest', 'at kimg', 'snapshots'), rows) + \
        _image(run_dir, out, 'Metrics vs kimg')


def latest_grid(run_dir, prefix):
    """The newest <prefix>XXXXXX.png (or <prefix>_init.png / <prefix>.png) of the run, else None."""
    pattern = re.compile(rf'{re.escape(prefix)}(\d+|_init)?\.png$')
    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), f'{prefix}*.png')):
        m = pattern.fullmatch(os.path.basename(path))
        if m:
            found.append((int(m.group(1)) if m.group(1) and m.group(1).isdigit() else -1, path))
    return max(found)[1] if found else None


def section_grids(run_dir, plot_dir):
    grids = [(prefix, latest_grid(run_dir, prefix)) for prefix in GRIDS]
    shown = ''.join(_image(run_dir, path, os.path.basename(path)) for _, path in grids if path)
    absent = [prefix for prefix, path in grids if not path]
    return shown + (_note(f'No {", ".join(absent)} grid yet.') if absent else '')


MASK_KEYS = ('area', 'binary', 'centre', 'border', 'inverted', 'upright', 'shape_iou', 'area_sd')


def _warning(text):
    return f'<p class="warning">WARNING: {html.escape(text)}</p>\n'


def section_masks(run_dir, plot_dir):
    """Is the mask the object? The last tick's probe check and the auto-test's, against the true masks."""
    rows, warnings = [], []
    path = os.path.join(run_dir, 'stats.jsonl')
    ticks = [r for r in read_jsonl(path) if 'Masks/inverted' in r] if os.path.isfile(path) else []
    if ticks:
        last = {k: ticks[-1][f'Masks/{k}']['mean'] for k in MASK_KEYS if f'Masks/{k}' in ticks[-1]}
        rows.append((f'G_ema at {ticks[-1]["Progress/kimg"]["mean"]:g} kimg', *(last.get(k) for k in MASK_KEYS)))
        warnings += list(mask_stats.warnings(last, finished=True).values()) if 'shape_iou' in last else []
    summary = samples.read_json(os.path.join(run_dir, 'auto_test', 'summary.json')) or {}
    check = summary.get('masks') or {}
    if check.get('samples'):
        flipped = ' (flipped)' if check.get('flipped') else ''
        rows.append((f'auto-test samples, polarity {check.get("polarity")}{flipped}',
                     *(check['samples'].get(k) for k in MASK_KEYS)))
        rows.append(('true test masks', *(check['true_masks'].get(k) for k in MASK_KEYS)))
        warnings = check.get('warnings', [])
    if not rows:
        return _note('No mask check yet (no tick finished).')
    note = _note('centre / border: mean mask on the central square and the outer ring; inverted / upright: fraction '
                 'of samples with clearly more mask on the border / in the centre; shape_iou: mean IoU of pairs of '
                 'centred masks (1 = one shape for every sample); area_sd: standard deviation of the per-sample '
                 'mask area.')
    return ''.join(_warning(w) for w in warnings) + _table(('masks', *MASK_KEYS), rows) + note


def section_auto_test(run_dir, plot_dir):
    path = os.path.join(run_dir, 'auto_test', 'summary.json')
    if not os.path.isfile(path):
        return _note('No auto_test/summary.json (the automatic evaluation has not finished).')
    s = read_json(path)
    rows = [('snapshot', s.get('snapshot')), ('kimg', s.get('kimg')), ('chosen by', s.get('selection')),
            (s.get('metric') or 'metric', s.get('metric_value')), ('samples', s.get('samples', {}).get('dir')),
            ('real data', s.get('segmentation', {}).get('settings', {}).get('real_data'))]
    timing = [(name, t.get('seconds'), 'yes' if t.get('reused') else 'no') for name, t in s.get('timing', {}).items()]
    return _table(None, rows) + _table(('stage', 'seconds', 'reused'), timing)


def section_segmentation(run_dir, plot_dir):
    found = _find(run_dir, '*', 'results.json')
    if not found:
        return _note('No segmentation results (no <samples>/<run>/results.json).')
    rows, previews = [], ''
    for path in found:
        results, seg_dir = read_json(path), os.path.dirname(path)
        name = os.path.relpath(seg_dir, run_dir)
        rows.append((name, *(results.get(k) for k in SEG_KEYS), results.get('reshape', 0.0),
                     results.get('self_train_rounds', 0)))
        preview = os.path.join(seg_dir, 'seg-test.png')
        if os.path.isfile(preview):
            previews += _image(run_dir, preview, f'{name}: image | prediction | truth')
        augmented = os.path.join(seg_dir, 'augment.png')
        if results.get('reshape') and os.path.isfile(augmented):
            previews += _image(run_dir, augmented, f'{name}: sample and mask as drawn | as the U-Net trained on them '
                                                   f'(foreground re-shaped, colour augmented)')
    note = _note('reshape: SD of the smooth field that bent each sample\'s foreground and mask before the U-Net saw it '
                 '(0: the samples as drawn, the original\'s protocol). self-train: rounds on the unlabelled training '
                 'images with the net\'s own confident labels after the synthetic phase (0: none, the original\'s).')
    return _table(('run', *SEG_KEYS, 'reshape', 'self-train'), rows) + note + previews


def section_mi(run_dir, plot_dir):
    found = _find(run_dir, 'MI-estimation-MINE', '*', 'MI_estimation_results.json')
    if not found:
        return _note('No MINE results (no <samples>/MI-estimation-MINE/<id>/MI_estimation_results.json).')
    rows = []
    for path in found:
        r = read_json(path)
        sep, single = r.get('separate', {}), r.get('single', {})
        rows.append((os.path.relpath(os.path.dirname(path), run_dir), sep.get('ave_MI_train1'),
                     sep.get('ave_MI_train2'), single.get('ave_MI_train')))
    return _table(('run', 'separate MI1: fg*m vs bg*m', 'separate MI2: bg*(1-m) vs fg*(1-m)', 'single MI: fg vs bg'),
                  rows)


SECTIONS = (
    ('Training options', section_options),
    ('Mask checks', section_masks),
    ('Training curves', section_training),
    ('FID / KID', section_metrics),
    ('Latest image grids', section_grids),
    ('Auto-test', section_auto_test),
    ('Segmentation (U-Net trained on samples, tested on real data)', section_segmentation),
    ('Mutual information (MINE)', section_mi),
)


def write_report(run_dir):
    """Write <run_dir>/report.html (plots in <run_dir>/report/) and return its path."""
    if not os.path.isdir(run_dir):
        raise UserError(f'run directory {run_dir} does not exist; pass a training run directory')
    plot_dir = os.path.join(run_dir, 'report')
    os.makedirs(plot_dir, exist_ok=True)
    name = html.escape(os.path.basename(os.path.abspath(run_dir)))
    parts = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{name}</title>'
             f'<style>{CSS}</style></head><body>\n<h1>{name}</h1>\n'
             f'<p class="note">Report written {time.strftime("%Y-%m-%d %H:%M:%S")}; regenerate with '
             f'<code>python make_report.py --run DIR</code>.</p>\n']
    for title, section in SECTIONS:
        try:
            body = section(run_dir, plot_dir)
        except READ_ERRORS as e:  # One bad file costs its section, not the report.
            body = _note(f'Could not build this section: {e}')
        parts.append(f'<h2>{html.escape(title)}</h2>\n{body}')
    parts.append('</body></html>\n')
    path = os.path.join(run_dir, 'report.html')
    with dnnlib.util.atomic_write(path, 'w') as f:
        f.write(''.join(parts))
    return path
