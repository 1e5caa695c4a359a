"""Reliability: no silent wrong answer, no hang, and the faults we can think of survived with nothing lost.

Each test drives the real entry point (a CLI in a subprocess, or the function the CLI calls) at 16 px with tiny
networks and one-iteration runs, so the whole file runs in CI in minutes on a 2-core CPU. The long campaign (SIGKILL
at ten points, each resumed with the documented command) is benchmarks/fault_campaign.py.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import calc_metrics
from dnnlib.util import UserError, append_jsonl, read_jsonl
from metrics import report, seg_eval
from tests.test_pipeline import make_run
from training import checkpoint, networks, presets, train_cli, training_loop

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
TINY = ['--cfg=tiny', '--data=synthetic', '--resolution=16', '--subset=16', '--batch=8', '--metrics=none', '--snap=1']


def tiny_run(outdir, *args, ticks=2, fault=None):
    """A run of `ticks` one-iteration ticks through benchmarks/tiny_run.py; returns the process."""
    env = dict(ENV, ILSGAN_FAULT=fault) if fault else ENV
    return subprocess.run([sys.executable, '-m', 'benchmarks.tiny_run', f'--ticks={ticks}', '--',
                           f'--outdir={outdir}', *TINY, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def only_run(outdir):
    names = os.listdir(outdir)
    assert len(names) == 1, names
    return os.path.join(outdir, names[0])


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp('finished')
    proc = tiny_run(outdir, '--seed=3', '--no-auto-test')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run(outdir)


def copy_run(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / os.path.basename(run_dir))


def test_exact_resume_refuses_options_that_differ_from_the_run(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    result = train_command(f'--resume={run}', '--seed=5', '--gamma=1', '--no-auto-test')
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert '--gamma=1.0, --seed=5 differ (the run has --gamma=None, --seed=3)' in line and '--kimg' in line, line
    result = train_command(f'--resume={run}', '--seed=3', '--snap=2', '--no-auto-test')  # Same seed, allowed snap.
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(run, 'training_options.json')))['network_snapshot_ticks'] == 2


def test_exact_resume_auto_test_uses_the_runs_seed(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path)
    result = train_command(f'--resume={run}', '--auto-test', '--auto-test-n=4', '--auto-test-iters=1',
                           '--auto-test-mine-iters=1')
    assert result.exit_code == 0, result.output
    summary = json.load(open(os.path.join(run, 'auto_test', 'summary.json')))
    assert summary['samples']['seed'] == 3 and summary['segmentation']['iters'] == 1
