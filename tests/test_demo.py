"""`make demo` end to end at toy size: trains, evaluates and reports, with the metrics in range."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_pipeline_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'demo.py'), f'--outdir={tmp_path}', '--kimg=1',
                           '--resolution=16', '--samples=40', '--seg-iters=4', '--mine-iters=4'],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = os.path.join(tmp_path, os.listdir(tmp_path)[0])
    summary = json.load(open(os.path.join(run_dir, 'auto_test', 'summary.json')))
    seg = summary['segmentation']['results']
    for key in ('pACC', 'IoU', 'mIoU', 'DRC_IoU', 'DRC_DICE'):
        assert 0 <= seg[key] <= 1, key
    mi = summary['mi']['results']
    assert set(mi) == {'separate', 'single'}
    assert os.path.isfile(os.path.join(run_dir, 'report.html'))
    html = open(os.path.join(run_dir, 'report.html'), encoding='utf-8').read()
    assert 'masks' in html and 'IoU' in html
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith('Demo done. Report: ') and 'IoU' in last and 'MI1' in last
