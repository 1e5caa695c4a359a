"""The automatic evaluation after 64-px training, as the original's training script ran it.

best snapshot -> samples in <run>/auto_test/synthetic_data-<kimg6> -> U-Net segmentation (E64, 'color' aug) ->
MINE -> best_fid_data_seg_results.json, summary.json and report.html. A finished stage is read back, never redone,
so an interrupted auto-test continues where it stopped when called again; but only a stage made with the same
settings and data: the segmentation and MINE runs go to the first <NNNNN> folder made with them, else to the next
free id. summary.json gives each number with the settings recorded by the run that produced it.

Differences from the original: the samples are seeded; a rerun reuses or resumes matching runs (the original always
started a new one, or, for MINE, crashed on an existing folder); the original's two identical `do_anti_leaking`
branches are this one call; each stage logs into its own file, so log files never chain; a run without
metric-<metric>.jsonl falls back to its last snapshot, with a warning, instead of crashing. Everything runs at
`scale` px, MINE included (the original's auto-test is 64-only, and its MINE always resizes to 64). The U-Net
trains on re-shaped foregrounds (seg_eval, `reshape`) when the run's preset says so: `tiny` does, the original
presets do not; and then self-trains on the run's own training images (seg_eval, `self_train_rounds`) when the
preset says so: `tiny` does one round, the original presets none.
"""
import contextlib
import json
import os
import re
import time

import datasets
import dnnlib
from dnnlib.util import UserError, read_json, recorded_settings, settings_differ, write_json
from metrics import mine, samples, seg_eval
from metrics.report import write_report
from training import mask_stats, presets


def choose_snapshot(run_dir, metric):
    """(snapshot path, kimg, metric value or None, how it was chosen): the lowest `metric`, else the last one."""
    jsonl = os.path.join(run_dir, f'metric-{metric}.jsonl') if metric else None
    if jsonl and os.path.isfile(jsonl):
        snapshot, kimg = samples.find_snapshot(run_dir, metric=metric)
        value = min(r['results'][metric] for r in samples.read_metric_file(jsonl) if r['kimg'] == kimg)
        return snapshot, kimg, value, f'lowest {metric}'
    snapshots = samples.list_snapshots(run_dir)
    if not snapshots:
        raise UserError(f'{run_dir} holds no network-snapshot-* files; the auto-test needs a trained run')
    kimg = max(snapshots)
    why = 'no metric was computed during training' if not metric else f'{run_dir} has no metric-{metric}.jsonl'
    print(f'WARNING: {why}; evaluating the LAST snapshot (kimg {kimg}), not the best-{metric or "FID"} one')
    return snapshots[kimg], kimg, None, 'last snapshot'


def matching_run(parent, desc, matches):
    """The first <parent>/<NNNNN>[-<desc>] folder that matches(folder) accepts, else the next free id."""
    pattern = re.compile(r'\d{5}' + (f'-{re.escape(desc)}' if desc else ''))
    names = sorted(n for n in os.listdir(parent) if pattern.fullmatch(n)) if os.path.isdir(parent) else []
    found = next((os.path.join(parent, n) for n in names if matches(os.path.join(parent, n))), None)
    return found or dnnlib.util.next_run_dir(parent, desc).rstrip('-')


def recorded(run_dir, settings):
    """The run's recorded values of the keys of `settings` (what produced its numbers)."""
    options = recorded_settings(run_dir) or {}
    return {k: options.get(k) for k in settings}


def preset_seg(run_dir, key):
    """A U-Net setting (seg_reshape, seg_self_train) that the run's preset asks for; 0 for runs without our training
    options."""
    cfg = ((read_json(os.path.join(run_dir, 'training_options.json')) or {}).get('cli_options') or {}).get('cfg')
    return presets.PRESETS[cfg][key] if cfg in presets.PRESETS else 0


def preset_reshape(run_dir):
    """The U-Net's foreground re-shaping that the run's preset asks for."""
    return float(preset_seg(run_dir, 'seg_reshape'))


def training_data(run_dir):
    """What the run was trained on (a data set name or path): the unlabelled images of the self-training rounds."""
    kwargs = (read_json(os.path.join(run_dir, 'training_options.json')) or {}).get('training_set_kwargs') or {}
    if not kwargs.get('data'):
        raise UserError(f'{run_dir}/training_options.json does not say what the run was trained on, which '
                        f'self-training needs; run the auto-test with self-training off')
    return kwargs['data']


@contextlib.contextmanager
def stage(name, title, log_path, timing, tee=True):
    """Print a header into log_path, tee the stage's output there (unless it keeps its own log), and time it.

    The body sets timing[name]['reused'] = True when it found the stage already done.
    """
    with dnnlib.util.Logger(log_path):
        print(f'=== auto-test | {name}: {title}')
    timing[name] = dict(reused=False)
    t0 = time.time()
    with dnnlib.util.Logger(log_path) if tee else contextlib.nullcontext():
        yield timing[name]
    timing[name]['seconds'] = round(time.time() - t0, 3)


def mask_check(syn_dir, real_data, data_root, scale):
    """The samples' mask check (from generation.json) next to the same figures for the true test masks, with the
    warnings that follow from both: is the mask the object, and as varied as the real ones?"""
    recorded = samples.read_json(os.path.join(syn_dir, samples.SETTINGS_NAME)) or {}
    generated, written = recorded.get('mask_check'), recorded.get('mask_check_written')
    true = mask_stats.summarize(datasets.load_test_set(real_data, scale, data_root=data_root).masks)
    warnings = []
    if generated:
        # Polarity is judged on the masks as generated, diversity on those the U-Net learns from.
        warnings = [text for kind, text in mask_stats.warnings(generated).items() if kind == 'inverted']
        warnings += [text for kind, text in mask_stats.warnings(written, true['shape_iou'], finished=True,
                                                               reference_area_sd=true['area_sd']).items()
                     if kind != 'inverted']
        if recorded.get('flipped'):
            warnings.append('the synthetic pairs were written flipped (mask -> 1 - mask, fg <-> bg)')
    for warning in warnings:
        print(f'WARNING: {warning}')
    return dict(samples=written, generated=generated, flipped=recorded.get('flipped'),
                polarity=recorded.get('polarity'), true_masks=true, warnings=warnings)


def _check_args(run_dir, n, seg_iters, mine_iters, scale):
    if not os.path.isdir(run_dir):
        raise UserError(f'run directory {run_dir} does not exist; pass a training run directory')
    if min(n, seg_iters, mine_iters, scale) < 1:
        raise UserError(f'n, seg_iters, mine_iters and scale must be positive, got {n}, {seg_iters}, {mine_iters}, '
                        f'{scale}')


def run_auto_test(run_dir, real_data, data_root=None, n=10000, seg_iters=6000, mine_iters=100000,
                  metric='fid10k_full', scale=64, seed=0, device=None, polarity='auto', unet_width=64, reshape=None,
                  self_train_rounds=None):
    """Run (or finish) the auto-test of a training run; returns the summary dict also written to summary.json.
    unet_width below the original's 64 trains a narrower U-Net (a quick CPU run); its results get their own folder.
    reshape: the strength of the U-Net's re-shaped foregrounds; self_train_rounds: the U-Net's self-training rounds
    on the run's training images; None takes the run's preset's, for either."""
    _check_args(run_dir, n, seg_iters, mine_iters, scale)
    reshape = preset_reshape(run_dir) if reshape is None else reshape
    rounds = int(preset_seg(run_dir, 'seg_self_train')) if self_train_rounds is None else self_train_rounds
    unlabelled = training_data(run_dir) if rounds else None
    auto_dir = os.path.join(run_dir, 'auto_test')
    os.makedirs(auto_dir, exist_ok=True)
    log_path = os.path.join(auto_dir, 'log.txt')
    summary_path = os.path.join(auto_dir, 'summary.json')
    previous = read_json(summary_path) or {}
    timing = {}
    try:
        with stage('snapshot', f'choose by {metric or "(no metric)"}', log_path, timing):
            snapshot, kimg, value, how = choose_snapshot(run_dir, metric)
            print(f'Snapshot: {snapshot} (kimg {kimg}, {how}{f", {metric} {value}" if value is not None else ""})')

        syn = os.path.join(auto_dir, samples.samples_dir_name(snapshot, kimg))
        seg_eval.check_real_data(real_data, data_root)  # Fail now, not after hours of sampling.

        with stage('samples', f'{n} samples -> {syn}', log_path, timing) as st:
            st['reused'] = samples.is_complete(syn, n, seed=seed, polarity=polarity)
            samples.generate_samples(snapshot, syn, n, seed=seed, device=device, polarity=polarity)
            masks = mask_check(syn, real_data, data_root, scale)

        title = (f'U-Net on {real_data} at {scale} px'
                 + (f', re-shaped foregrounds (SD {reshape:g})' if reshape else '')
                 + (f', {rounds} self-training round(s) on {unlabelled}' if rounds else ''))
        unet = dict(input_size=scale, score_size=scale, aug='color', iters=seg_iters, seed=seed, data_root=data_root,
                    width=unet_width, reshape=reshape, self_train_data=unlabelled, self_train_rounds=rounds)
        with stage('segmentation', title, log_path, timing, tee=False) as st:
            seg_settings = seg_eval.run_settings(syn, real_data, **unet)
            desc = seg_eval.run_desc(real_data, "color", scale, scale, reshape, rounds)
            seg_dir = matching_run(syn, f'DRCreal-{desc}',
                                   lambda d: not settings_differ(recorded_settings(d), seg_settings))
            st['reused'] = os.path.isfile(os.path.join(seg_dir, 'results.json'))
            print(f'{"Reusing" if st["reused"] else "Running"} {seg_dir}')
            # The test set is in memory: no loader workers.
            seg = seg_eval.run_segmentation(syn, real_data, seg_dir, device=device, workers=0, **unet)

        with stage('mine', f'MINE, {mine_iters} iterations', log_path, timing, tee=False) as st:
            mi_settings = mine.run_settings(syn, mine_iters, scale, seed=seed)
            mi_dir = matching_run(os.path.join(syn, 'MI-estimation-MINE'), '', lambda d: mine.matches(d, mi_settings))
            st['reused'] = os.path.isfile(os.path.join(mi_dir, mine.RESULTS_NAME))
            mi = mine.eval_mi(syn, outdir=mi_dir, iters=mine_iters, resolution=scale, device=device, seed=seed)

        def rel(path):
            return os.path.relpath(path, run_dir)

        generation = read_json(os.path.join(syn, samples.SETTINGS_NAME))
        summary = dict(
            snapshot=rel(snapshot), kimg=kimg, selection=how, metric=metric, metric_value=value,
            samples=dict(dir=rel(syn), **{k: generation[k] for k in ('n', 'seed', 'truncation_psi', 'noise_mode',
                                                                     'polarity')}),
            masks=masks,
            segmentation=dict(dir=rel(seg_dir), settings=recorded(seg_dir, seg_settings), results=seg),
            mi=dict(dir=rel(mi_dir), settings=recorded(os.path.join(mi_dir, mine.MODES[0]), mi_settings), results=mi),
            timing=timing)
        for name, section in (('samples', 'samples'), ('segmentation', 'segmentation'), ('mine', 'mi')):
            # A reused stage keeps the time it took when it actually ran, if the previous summary is of its folder.
            ran = previous.get('timing', {}).get(name)
            if timing[name]['reused'] and ran and previous.get(section, {}).get('dir') == summary[section]['dir']:
                timing[name]['seconds'] = ran['seconds']
        write_json(os.path.join(auto_dir, 'best_fid_data_seg_results.json'), {f'{kimg:06d}': seg})
        write_json(summary_path, summary)
        with dnnlib.util.Logger(log_path):
            print(f'=== auto-test | done: {json.dumps(dict(kimg=kimg, segmentation=seg, mi=mi))}')
    finally:
        print(f'Report: {write_report(run_dir)}')  # Also after a failed stage: it shows what exists.
    return summary
