"""benchmarks/gpu_check.py on a machine without a GPU: options, the order of the stages, failure capture, the report,
the CUDA-only test selection, the run summary, the distributed smoke run over gloo and the toy throughput stage."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import dnnlib
from benchmarks import gpu_check, gpu_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason='checks how the GPU stages skip without CUDA')


def _check(*args, timeout=900):
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.gpu_check', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def test_stage_selection_by_name_and_number_keeps_the_order():
    assert [s.name for s in gpu_check.select_stages('fp16,1,throughput')] == ['environment', 'fp16', 'throughput']
    assert len(gpu_check.select_stages('all')) == 7


@pytest.mark.parametrize('args, message', [(['--stages', 'fp17'], "unknown stage 'fp17'"),
                                           (['--stages', ','], 'names no stage'),
                                           (['--run-seconds', '5'], '--run-seconds at least 30')])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    code, out, err = _check('--out', str(tmp_path / 'out'), *args)
    assert code == 2 and message in err and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


@no_gpu
def test_gpu_stages_skip_with_the_reason_and_the_report_keeps_the_order(tmp_path):
    code, out, _ = _check('--out', str(tmp_path), '--stages', 'torchrun_nccl,environment,fp16')
    assert code == 0
    report = (tmp_path / 'report.md').read_text()
    rows = [line.split('|')[1:6] for line in report.splitlines() if line.startswith('| ') and line[2].isdigit()]
    assert [(r[0].strip(), r[1].strip(), r[2].strip()) for r in rows] == [
        ('1', 'environment', 'pass'), ('4', 'fp16', 'skip'), ('7', 'torchrun_nccl', 'skip')]
    assert 'no CUDA GPU' in rows[1][4] and report in out
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['stages'][0]['details']['torch'] == torch.__version__


def test_each_stage_leaves_the_later_stages_what_they_need_at_least():
    args = gpu_check.parse_args(['--run-seconds', '100', '--throughput-seconds', '70'])
    by_name = {s.name: s for s in gpu_check.STAGES}
    later = [by_name['training_run'], by_name['torchrun_nccl']]
    assert gpu_check.stage_seconds(by_name['throughput'], args, 1000, later) == 70
    assert gpu_check.stage_seconds(by_name['throughput'], args, 150, later) == 150 - 90 - 30
    assert gpu_check.stage_seconds(by_name['training_run'], args, 1000, []) == 125


def test_a_spent_budget_skips_the_remaining_stages(tmp_path):
    code, _, _ = _check('--out', str(tmp_path), '--stages', 'environment', '--budget', '5')
    stage = json.loads((tmp_path / 'results.json').read_text())['stages'][0]
    assert code == 0 and stage['status'] == 'skip' and 'no time left' in stage['summary']


def _args(tmp_path):
    return gpu_check.parse_args(['--out', str(tmp_path)])


@no_gpu
def test_a_crashing_stage_is_a_failure_with_its_error(tmp_path):
    stage = next(s for s in gpu_check.STAGES if s.name == 'fp16')
    with open(tmp_path / 'log', 'w') as log:
        r = gpu_check.run_stage(stage, _args(tmp_path), 900, str(tmp_path), log)
    assert r['status'] == 'fail' and r['summary'].startswith('exited with code 1')
    assert 'Traceback' in r['output_tail'] and 'fp16' in (tmp_path / 'log').read_text()


def test_a_hanging_stage_is_killed_at_its_limit(tmp_path):
    stage = next(s for s in gpu_check.STAGES if s.name == 'environment')
    with open(tmp_path / 'log', 'w') as log:
        r = gpu_check.run_stage(stage, _args(tmp_path), 0.5, str(tmp_path), log, grace=0)
    assert r['status'] == 'fail' and r['summary'].startswith('timed out after 0 s')


def test_report_has_one_table_with_the_sub_rows(tmp_path):
    results = [dict(number=1, name='environment', status='pass', seconds=2.4, summary='GPU X | 80 GiB',
                    details=dict(gpu='GPU X', torch='2.11', cuda='13.0')),
               dict(number=5, name='throughput', status='fail', seconds=100, summary='1 of 2 cases ran',
                    rows=[['train 64 px', 'pass', 'ours 500 img/s'], ['MINE', 'fail', 'timed out']])]
    table = gpu_check.write_report(str(tmp_path), '2026-01-01T00:00:00', results)
    assert table == (tmp_path / 'report.md').read_text()
    lines = table.splitlines()
    assert lines[0] == '# gpu-check: GPU X, torch 2.11, CUDA 13.0 (2026-01-01T00:00:00)'
    assert lines[4] == '| 1 | environment | pass | 2 | GPU X / 80 GiB |'
    assert lines[5:] == ['| 5 | throughput | fail | 100 | 1 of 2 cases ran |', '| 5.1 | train 64 px | pass | | ours 500 img/s |',
                         '| 5.2 | MINE | fail | | timed out |']
    assert json.loads((tmp_path / 'results.json').read_text())['stages'][1]['rows'][1] == ['MINE', 'fail', 'timed out']


def test_junit_counts_of_a_real_pytest_run(tmp_path):
    (tmp_path / 'test_mixed.py').write_text(textwrap.dedent('''
        import pytest
        def test_ok(): pass
        def test_bad(): assert False
        @pytest.mark.skip(reason='no')
        def test_skipped(): pass
    '''))
    subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', f'--junitxml={tmp_path / "r.xml"}',
                    str(tmp_path / 'test_mixed.py')], capture_output=True, timeout=300)
    counts, failed = gpu_stages.junit_counts(str(tmp_path / 'r.xml'))
    assert counts == dict(tests=3, failed=1, errors=0, skipped=1, passed=1)
    assert failed == ['test_mixed::test_bad']


def test_the_cuda_only_selection_is_the_tests_that_need_a_gpu():
    proc = subprocess.run([sys.executable, '-m', 'pytest', '--collect-only', '-q', '-p', 'no:cacheprovider', '-p',
                           'benchmarks.pytest_cuda_only', 'tests/test_cuda_ops.py', 'tests/test_augment.py'],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    ids = [line for line in proc.stdout.splitlines() if '::' in line]
    assert len(ids) > 50
    assert all('::test_gpu_' in i or '::test_cuda_' in i for i in ids), [i for i in ids if 'gpu' not in i][:5]
    assert not any('unavailable_without_cuda' in i or 'emu_' in i for i in ids)


def test_the_fp16_stage_builds_the_networks_the_training_command_builds():
    G, D, kwargs = gpu_stages.preset_networks(64, 'ILS_predL', torch.device('cpu'))
    synthesis = kwargs['G_kwargs']['synthesis_kwargs']
    assert (G.img_resolution, D.img_resolution) == (64, 64) and G.training and D.training
    assert synthesis['num_fp16_res'] == 4 and synthesis['conv_clamp'] == 256
    assert kwargs['D_kwargs']['num_fp16_res'] == 4
    with pytest.raises(dnnlib.util.UserError, match='unknown --cfg'):
        gpu_stages.preset_networks(64, 'ILS', torch.device('cpu'))


def test_run_summary_from_stats_lines():
    def line(kimg, t, sec_per_kimg, maintenance, area, loss=0.7):
        return {'Progress/kimg': {'mean': kimg}, 'timestamp': t, 'Timing/sec_per_kimg': {'mean': sec_per_kimg},
                'Timing/maintenance_sec': {'mean': maintenance}, 'Loss/G/mask_area': {'mean': area},
                'Loss/G/loss': {'mean': loss}, 'Resources/peak_gpu_mem_gb': {'mean': 3.0}}
    s = gpu_stages.summarise_run([line(0.032, 100, 50, 0, 0.5), line(4.0, 110, 2.0, 6.0, 0.4), line(8.0, 118, 2.5, 0.1, 0.3)])
    assert s['ticks'] == 3 and s['kimg'] == 8.0 and s['kimg_per_s'] == 0.5 and s['snapshot_s'] == 6.0
    assert abs(s['overall_kimg_per_s'] - (8.0 - 0.032) / 18) < 1e-9 and s['mask_area'] == 0.3 and s['finite']
    assert not gpu_stages.summarise_run([line(0, 0, 1, 0, 0.5), line(4, 1, 1, 0, 0.5, loss=float('nan'))])['finite']


def test_distributed_smoke_run_over_gloo(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', '-m',
                           'benchmarks.nccl_smoke', '--backend', 'gloo', '--device', 'cpu', '--res', '16', '--channel-max', '16', '--batch', '4',
                           '--steps', '1', '--result', str(tmp_path / 'r.json')], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / 'r.json').read_text())
    assert r['backend'] == 'gloo' and r['world'] == 1 and r['all_reduce'] == 1.0 and r['finite']


def test_toy_throughput_compares_ours_with_the_original(tmp_path):
    # Budgets far beyond the toy cases' needs: this checks what the stage reports, not how fast the host is.
    code, out, err = _check('--out', str(tmp_path), '--stages', 'throughput', '--toy', '--workdir', str(tmp_path / 'w'),
                            '--budget', '3600', '--throughput-seconds', '3000', timeout=3600)
    assert code == 0, err[-2000:]
    stage = json.loads((tmp_path / 'results.json').read_text())['stages'][0]
    assert stage['status'] == 'pass' and [r[1] for r in stage['rows']] == ['pass'] * 4
    train = stage['details']['train toy']['results'][0]
    assert set(train['results']) == {'original', 'ours'} and train['speedup'] > 0
    assert set(train['results']['original']['parts_ms']) == {'fetch', 'Gmain', 'Greg', 'Dmain', 'Dreg', 'ema'}
    assert '| 5.1 | train toy | pass |' in (tmp_path / 'report.md').read_text()
