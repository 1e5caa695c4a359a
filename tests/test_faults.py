"""Reliability: no silent wrong answer, no hang, and the faults we can think of survived with nothing lost.

Each test drives the real entry point (a CLI in a subprocess, or the function the CLI calls) at 16 px with tiny
networks and one-iteration runs, so the whole file runs in CI in minutes on a 2-core CPU. The long campaign (SIGKILL
at ten points, each resumed with the documented command) is benchmarks/fault_campaign.py.
"""
import errno
import importlib
import json
import os
import shutil
import signal
import subprocess
import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import calc_metrics
from benchmarks import fault_campaign as campaign
from benchmarks import tiny_run as tiny_run_module
from dnnlib.util import UserError, append_jsonl, read_jsonl
from metrics import metric_main, report, seg_eval
from pipeline import auto_test, train_cli
from tests.test_metrics_fid import TinyDataset, TinyG, needs_inception
from tests.test_pipeline import make_real_folder, make_run
from tests.test_segmentation import write_pairs
from training import checkpoint, networks, presets, training_loop

TICK = {'Progress/kimg': {'num': 1, 'mean': 1.0, 'std': 0.0}, 'Loss/G/loss': {'num': 1, 'mean': 0.5, 'std': 0.0}}


def tick_line(kimg):
    return json.dumps(dict(TICK, **{'Progress/kimg': {'num': 1, 'mean': float(kimg), 'std': 0.0}})) + '\n'

# ---------------------------------------------------------------------------------------------------------------------
# JSON-lines files: one policy. Only a last line cut short by a kill is dropped; a bad line elsewhere is an error
# that names the file and the line.


def test_append_after_a_cut_line_repairs_the_log(tmp_path):
    path = tmp_path / 'log.jsonl'
    path.write_text('{"a": 1}\n{"a": 2')  # Killed in the middle of the second record.
    append_jsonl(str(path), [{'a': 3}])
    assert path.read_text() == '{"a": 1}\n{"a": 3}\n'
    path.write_text('{"a": 1}')  # A whole record that only lacks its newline is kept.
    append_jsonl(str(path), [{'a': 2}])
    assert read_jsonl(str(path)) == [{'a': 1}, {'a': 2}]
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(UserError, match=r'log.jsonl:2 is not a JSON object'):
        read_jsonl(str(path))


def test_resume_refuses_stats_with_a_bad_middle_line_and_keeps_the_file(tmp_path):
    path = tmp_path / 'stats.jsonl'
    text = tick_line(0) + '{"Progress/kimg": garbage\n' + tick_line(1) + tick_line(2)
    path.write_text(text)
    with pytest.raises(UserError, match=r'stats.jsonl:2'):
        training_loop.drop_stats_after(str(path), 1000)
    assert path.read_text() == text  # Nothing after the bad line was thrown away.


def test_resume_drops_replayed_ticks_and_a_cut_last_line(tmp_path):
    path = tmp_path / 'stats.jsonl'
    path.write_text(tick_line(0) + tick_line(1) + tick_line(2) + '{"Progress/kimg": {"num"')
    training_loop.drop_stats_after(str(path), 1000)
    assert path.read_text() == tick_line(0) + tick_line(1)


def test_segmentation_val_log_with_a_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / 'metric-val.jsonl'
    path.write_text('{"iter": 20}\n{"iter": 1020\n{"iter": 2020}\n')  # Reading only line 1 picked the best of one.
    with pytest.raises(UserError, match=r'metric-val.jsonl:2'):
        seg_eval.read_jsonl(str(path))


def test_report_names_a_bad_stats_line_instead_of_skipping_it(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'stats.jsonl').write_text(tick_line(1) + 'not json\n' + tick_line(2))
    text = open(report.write_report(str(run)), encoding='utf-8').read()
    assert 'stats.jsonl:2' in text and 'training_curves.png' not in text


def test_calc_metrics_reads_a_metric_file_whose_last_line_was_cut(tmp_path):
    run = make_run(tmp_path / 'run', kimgs=(0,))
    with open(os.path.join(run, 'metric-fid10k_full.jsonl'), 'a', encoding='utf-8') as f:
        f.write('{"results": {"fid10k_full": 1')  # A kill during the append of the next record.
    result = CliRunner().invoke(calc_metrics.main, ['--network', run, '--data', 'synthetic', '--metrics',
                                                    'fid10k_full', '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    assert 'already scored, skipped' in result.output

# ---------------------------------------------------------------------------------------------------------------------
# --resume=<weights>: every tensor of the new networks comes from the snapshot, or the run does not start.

TRAIN = ['--cfg=tiny', '--data=synthetic', '--resolution=16', '--batch=8', '--metrics=none', '--no-auto-test']


def train_command(*args):
    return CliRunner().invoke(train_cli.make_command(64, default_auto_test=False), [str(a) for a in args])


def tiny_snapshot(path, **opts):
    """A snapshot of the tiny preset at 16 px (untrained: only its tensor names and shapes matter here)."""
    _, kwargs, _ = train_cli.build_options(dict(OPTS, **opts), 64, presets.SCRIPT_PRESETS[64][0])
    G = networks.PerturbGenerator(**kwargs['G_kwargs'])
    D = networks.DiscriminatorOpen(**kwargs['D_kwargs'])
    checkpoint.save_snapshot(path, {'G': G, 'D': D, 'G_ema': G, 'augment_pipe': None})
    return str(path)


OPTS = dict(cfg='tiny', resolution=16, gpus=1, batch=8, batch_gpu=None, cond=False, aug='ada', p=None, augpipe='bgc',
            target=0.6, metrics='none', fp32=False, map=None, freezed=0, nhwc=False, gamma=None, no_ils=False, seed=0,
            kimg=None, tick=None, snap=50, nobench=False, allow_tf32=False, inception=None)


def test_resume_weights_refuses_a_shallower_mapping_network(tmp_path):
    snap = tiny_snapshot(tmp_path / 'map2.pt', map=2)
    result = train_command(f'--outdir={tmp_path / "runs"}', *TRAIN, '--map=8', f'--resume={snap}', '--dry-run')
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith('error: ') and 'mapping_bg.fc2' in line and '--resume-partial' in line, result.output
    assert not (tmp_path / 'runs').exists()


def test_resume_partial_says_what_stays_random(tmp_path):
    snap = tiny_snapshot(tmp_path / 'map2.pt', map=2)
    result = train_command(f'--outdir={tmp_path / "runs"}', *TRAIN, '--map=8', f'--resume={snap}', '--resume-partial',
                           '--dry-run')
    assert result.exit_code == 0, result.output
    assert 'stay as initialised' in result.output and 'mapping_bg.fc7.weight' in result.output


def test_resume_weights_from_an_original_pickle_checks_every_tensor(golden_dir):
    snap = checkpoint.load_snapshot(os.path.join(golden_dir, 'legacy_snapshot_res32.pkl'))
    kwargs = dict(snap['G']._init_kwargs, mapping_kwargs=dict(num_layers=8))  # The pickle's G has 2 mapping layers.
    deeper = {'G': networks.PerturbGenerator(**kwargs), 'D': snap['D'], 'G_ema': snap['G_ema']}
    with pytest.raises(UserError, match=r'mapping_bg\.fc2'):
        checkpoint.check_weights_fit(snap, deeper, 'legacy_snapshot_res32.pkl')

# ---------------------------------------------------------------------------------------------------------------------
# --resume=<run dir>: the stored run's options, except a short documented list.


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    """A run of 2 one-iteration ticks with --seed=3, a snapshot and a training state at each."""
    outdir = tmp_path_factory.mktemp('finished')
    proc = campaign.tiny_run(outdir, '--metrics=none', '--no-auto-test', ticks=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return campaign.only_run(outdir)


def copy_run(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / os.path.basename(run_dir))


def test_exact_resume_refuses_options_that_differ_from_the_run(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    result = train_command(f'--resume={run}', '--seed=5', '--gamma=1', '--no-auto-test')
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert '--gamma=1.0, --seed=5 differ (the run has --gamma=None, --seed=3)' in line and '--kimg' in line, line
    result = train_command(f'--resume={run}', '--seed=3', '--snap=3', '--no-auto-test')  # Same seed, allowed snap.
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(run, 'training_options.json')))['network_snapshot_ticks'] == 3


def test_exact_resume_auto_test_uses_the_runs_seed(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    result = train_command(f'--resume={run}', '--auto-test', '--auto-test-n=4', '--auto-test-iters=1',
                           '--auto-test-mine-iters=1')
    assert result.exit_code == 0, result.output
    summary = json.load(open(os.path.join(run, 'auto_test', 'summary.json')))
    assert summary['samples']['seed'] == 3 and summary['segmentation']['settings']['seed'] == 3

# ---------------------------------------------------------------------------------------------------------------------
# Cached evaluation results: reused only for the same settings and data, and reported with the settings that
# produced them.

SEG = dict(input_size=16, score_size=16, iters=1, batch=2, device='cpu', workers=0)


@pytest.fixture
def seg_data(tmp_path):
    return dict(syn=write_pairs(tmp_path / 'syn', 8, 16, 'img', 'mask'), real=make_real_folder(tmp_path / 'real'))


def test_segmentation_reuses_results_only_for_the_same_settings(seg_data, tmp_path):
    run = str(tmp_path / 'seg')
    seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **SEG)
    with pytest.raises(UserError, match=r'iters=1 \(asked: 2\)'):
        seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **dict(SEG, iters=2))
    with pytest.raises(UserError, match=r'seed=0 \(asked: 1\)'):
        seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **dict(SEG, seed=1))
    Image.new('RGB', (16, 16)).save(os.path.join(seg_data['real'], 'masks', '0.png'))  # Same names, new content.
    with pytest.raises(UserError, match='real data changed since'):
        seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **SEG)


def test_auto_test_recomputes_what_other_settings_asked_for(tmp_path):
    run = make_run(tmp_path / 'run', kimgs=(0,))
    real = make_real_folder(tmp_path / 'real')
    kwargs = dict(n=8, seg_iters=1, mine_iters=2, scale=16, device='cpu')
    first = auto_test.run_auto_test(run, real, **kwargs)
    again = auto_test.run_auto_test(run, real, **dict(kwargs, mine_iters=3, seg_iters=2))
    assert again['mi']['settings']['iters'] == 3 and again['mi']['dir'] != first['mi']['dir']
    assert again['segmentation']['settings']['iters'] == 2 and again['segmentation']['dir'] != first['segmentation']['dir']
    assert not again['timing']['mine']['reused'] and not again['timing']['segmentation']['reused']
    assert again['mi']['results'] != first['mi']['results']
    third = auto_test.run_auto_test(run, real, **kwargs)  # The first settings again: their runs are reused.
    assert third['mi'] == first['mi'] and third['segmentation'] == first['segmentation']
    assert third['timing']['mine']['reused'] and third['timing']['segmentation']['reused']


@needs_inception
def test_fid_real_statistics_are_keyed_on_the_images(tmp_path):
    G, ds, cache = TinyG(), TinyDataset(), str(tmp_path / 'cache')
    first = metric_main.calc_metric('fid8_full', G, ds, 'cpu', batch_size=4, cache_dir=cache, progress=False)
    ds.images = ds.images.copy()
    ds.images[0] = 255 - ds.images[0]  # Same name, count and resolution; one image changed.
    second = metric_main.calc_metric('fid8_full', G, ds, 'cpu', batch_size=4, cache_dir=cache, progress=False)
    assert len(os.listdir(cache)) == 2 and first.results.fid8_full != second.results.fid8_full

# ---------------------------------------------------------------------------------------------------------------------
# The training data thread: an error while reading stops the run, it does not leave it waiting forever.


class FailingImages:
    """16 images at 16 px whose reads fail from the `fail_at`-th on, as a disk that dies mid-run."""
    name, resolution = 'failing16', 16

    def __init__(self, fail_at):
        self.images = np.random.RandomState(0).randint(0, 256, size=(16, 3, 16, 16), dtype=np.uint8)
        self.reads, self.fail_at = 0, fail_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads >= self.fail_at:
            raise OSError(errno.EIO, 'Input/output error', f'image {i}')
        return self.images[i]


def test_a_data_error_stops_training_instead_of_hanging(tmp_path):
    _, kw, _ = train_cli.build_options(dict(OPTS, map=1), 64, presets.SCRIPT_PRESETS[64][0])
    kw['G_kwargs']['synthesis_kwargs'].update(tiny_run_module.CHANNELS)
    kw['D_kwargs'].update(tiny_run_module.CHANNELS)
    kw.update(total_kimg=0.04, kimg_per_tick=0.008, image_snapshot_ticks=1, network_snapshot_ticks=1,
              grid_max_side=2)
    del kw['metrics'], kw['inception']  # The CLI turns these into the loop's snapshot_metrics hook.
    dataset, outcome = FailingImages(fail_at=8 * 4), []  # The 4th batch fails.

    def train():
        try:
            training_loop.training_loop(run_dir=str(tmp_path), training_set=dataset, training_set_kwargs={}, **kw)
        except Exception as e:
            outcome.append(e)
    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    thread.join(timeout=600)  # Far more than the 3 iterations take; a hang never ends.
    assert not thread.is_alive(), 'training waits forever for a batch the dead data thread will not send'
    assert len(outcome) == 1 and isinstance(outcome[0], UserError), outcome
    assert 'reading the training data failed' in str(outcome[0]) and 'Input/output error' in str(outcome[0])
    state = torch.load(tmp_path / 'training-state.pt', weights_only=True)  # The last snapshot's state is intact.
    assert state['cur_nimg'] in (8, 16, 24)

# ---------------------------------------------------------------------------------------------------------------------
# Killed, or out of disk space, at a deterministic point (the ILSGAN_FAULT hook): resumed with the documented command,
# the run ends as an uninterrupted one; the previous snapshot and state stay loadable.


def assert_resumes_to(ref_dir, run_dir):
    resumed = campaign.resume(run_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not campaign.differences(campaign.outcome(ref_dir), run_dir)
    assert not [n for n in os.listdir(run_dir) if n.startswith('.tmp-')]


@pytest.mark.parametrize('point', ['tick@2', 'write:network-snapshot@2'])
def test_a_killed_run_resumes_to_the_uninterrupted_outcome(finished_run, tmp_path, point):
    killed = campaign.tiny_run(tmp_path, '--metrics=none', '--no-auto-test', ticks=2, fault=f'kill:{point}')
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert_resumes_to(finished_run, campaign.only_run(tmp_path))


def test_a_full_disk_while_the_state_is_written_stops_with_one_line(finished_run, tmp_path):
    full = campaign.tiny_run(tmp_path, '--metrics=none', '--no-auto-test', ticks=2,
                             fault='enospc:write:training-state@2')
    line = campaign.one_line_error(full)
    assert line and 'training-state.pt: No space left on device' in line and '--resume=' in line, full.stderr[-2000:]
    run = campaign.only_run(tmp_path)
    assert torch.load(os.path.join(run, 'training-state.pt'), weights_only=True)['cur_nimg'] == 8  # The previous one.
    assert not [n for n in os.listdir(run) if n.startswith('.tmp-')]
    assert_resumes_to(finished_run, run)


def test_a_full_disk_while_a_snapshot_is_written_keeps_the_previous_one(tmp_path):
    full = campaign.tiny_run(tmp_path, '--metrics=none', '--no-auto-test', ticks=2,
                             fault='enospc:write:network-snapshot@2')
    line = campaign.one_line_error(full)
    assert line and 'No space left on device' in line, full.stderr[-2000:]
    run = campaign.only_run(tmp_path)
    assert checkpoint.load_snapshot(os.path.join(run, 'network-snapshot-000000.pt'))['G_ema'] is not None
    assert torch.load(os.path.join(run, 'training-state.pt'), weights_only=True)['cur_nimg'] == 8


def test_a_data_error_in_a_real_run_is_one_line(tmp_path):
    line = campaign.one_line_error(campaign.tiny_run(tmp_path, '--metrics=none', '--no-auto-test', fault='eio:data@3'))
    assert line and 'reading the training data failed' in line and 'Input/output error' in line

# ---------------------------------------------------------------------------------------------------------------------
# Damaged files and bad inputs (the fault campaign's cases, run here in-process through the same click commands):
# one clear line naming the problem, no traceback, and every input file left as it was.


def invoke(args):
    """`python <script> <args>` in this process: the script's click command through click's test runner."""
    command = importlib.import_module(os.path.splitext(args[0])[0]).main
    return CliRunner().invoke(command, args[1:])


@pytest.mark.parametrize('name', ['training-state.pt cut short', 'training-state.pt with a flipped byte',
                                  'snapshot cut short', 'stats.jsonl with a damaged line'])
def test_a_damaged_file_is_refused_by_name(finished_run, tmp_path, name):
    run = copy_run(finished_run, tmp_path)
    args, path = campaign.damage(str(run), name)
    before = campaign.folder_digest(run)
    result = invoke(args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and os.path.basename(path) in lines[0], result.output[-2000:]
    assert campaign.folder_digest(run) == before


def test_a_damaged_results_file_is_refused(seg_data, tmp_path):
    run = str(tmp_path / 'seg')
    seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **SEG)
    open(os.path.join(run, 'results.json'), 'w').write('{"IoU": 0.5')
    with pytest.raises(UserError, match='results.json is damaged'):
        seg_eval.run_segmentation(seg_data['syn'], seg_data['real'], run, **SEG)


@pytest.mark.parametrize('name', list(campaign.BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_loses_nothing(tmp_path, name):
    build = campaign.BAD_INPUTS[name]
    if build is campaign.BAD_INPUTS['read-only output folder'] and \
            not campaign.mount_read_only(str(tmp_path / 'read-only')):
        pytest.skip('no way to make a read-only folder here')
    if name.startswith("original's pickle") and not os.path.isfile(campaign.GOLDEN_PICKLE):
        pytest.skip(f'{campaign.GOLDEN_PICKLE} is missing')
    try:
        args, expected = build(str(tmp_path))
        before = campaign.folder_digest(tmp_path / 'in')
        result = invoke(args)
        assert campaign.refusal_ok(result.exit_code, result.stderr, expected), result.output[-2000:]
        assert campaign.folder_digest(tmp_path / 'in') == before
        assert expected is None or not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')
    finally:
        if os.path.ismount(tmp_path / 'read-only'):
            subprocess.run(['umount', str(tmp_path / 'read-only')], check=True)
