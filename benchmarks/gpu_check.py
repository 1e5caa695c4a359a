"""One command that proves the GPU path, in seven stages (make gpu-check):

    python -m benchmarks.gpu_check --out gpu-check/
    python -m benchmarks.gpu_check --out gpu-check/ --stages fp16,throughput     (a subset, e.g. what failed)
    python -m benchmarks.gpu_check --out /tmp/check --toy                        (the CPU dry run CI does)

1 environment   GPU name and memory, driver, CUDA, torch, cuDNN
2 plugins       build of the bias_act and upfirdn2d CUDA plugins (time; the error and the fallback on failure)
3 cuda_tests    every CUDA-only test of tests/ (benchmarks/pytest_cuda_only.py), pass/fail counts
4 fp16          G and D at 64 and 128 px with the presets' fp16 layers against fp32 on the same weights
5 throughput    training iteration, generation, U-Net, MINE: ours against the original's formulation, eager and
                torch.compile'd where it applies
6 training_run  a 3-minute 64 px ILS_predL run on `synthetic` through train_ILS_64.py (from stats.jsonl)
7 torchrun_nccl a torchrun --nproc_per_node=1 run of the DDP training phases over NCCL

Every stage runs in its own process group with its own time limit, in order; a stage that fails, crashes or hangs
is reported and the next one runs. The limits share one --budget (default 540 s, inside the device's 10 minutes):
a stage is given its own limit at most, and never the time that the stages after it need at least. Without a CUDA GPU the GPU stages are skipped
with the reason (--toy still runs the throughput stage at toy size). After every stage <out>/report.md (one table)
and <out>/results.json (every figure) are rewritten, and <out>/stages.log collects the stages' output (three files:
point --out at the device's $OUT); builds, runs and caches go to --workdir. The table is printed at the end. Exit
code 0 when no stage failed.
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from dnnlib.util import UserError, atomic_write, cli_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    seconds: float      # The most it may take; a stage that runs sub-cases (throughput) uses what it is given.
    reserve: float      # What it needs at least: earlier stages leave this much of the budget to it.
    needs_gpu: bool


STAGES = [
    # Its limit only stops a hung stage: importing torch and the project takes minutes on a loaded CPU host.
    Stage('environment', 'GPU, driver, CUDA, torch, cuDNN', 240, 10, False),
    Stage('plugins', 'build of both CUDA plugins', 240, 60, True),
    Stage('cuda_tests', 'every CUDA-only test', 180, 40, True),
    Stage('fp16', 'fp16 against fp32, 64 and 128 px', 90, 20, True),
    Stage('throughput', 'ours against the original formulation', 150, 60, True),  # --throughput-seconds
    Stage('training_run', '64 px ILS_predL run on synthetic', 205, 90, True),  # --run-seconds + start and stop
    Stage('torchrun_nccl', 'torchrun --nproc_per_node=1, NCCL', 90, 30, True),
]
MIN_SECONDS = 10  # A stage with less time than this left is skipped.


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='gpu-check', help='Output folder [default: gpu-check]')
    p.add_argument('--stages', default='all', help='Comma-separated stage names or numbers [default: all]')
    p.add_argument('--budget', type=float, default=540, help='Seconds for all stages together [default: 540]')
    p.add_argument('--run-seconds', type=float, default=180, help='Length of the training run [default: 180]')
    p.add_argument('--throughput-seconds', type=float, default=150,
                   help='Time for the throughput cases; the compiled ones come last [default: 150]')
    p.add_argument('--toy', action='store_true', help='Run the throughput stage at toy size (works on a CPU)')
    p.add_argument('--workdir', help='Scratch folder for builds, runs and caches [default: a new temporary folder]')
    args = p.parse_args(argv)
    args.selected = select_stages(args.stages)
    if not args.selected:
        raise UserError('--stages names no stage')
    if args.budget <= 0 or args.run_seconds < 30:
        raise UserError('--budget must be positive and --run-seconds at least 30')
    return args


def select_stages(spec):
    if spec == 'all':
        return list(STAGES)
    names = {s.name: s for s in STAGES}
    chosen = []
    for token in (t.strip() for t in spec.split(',') if t.strip()):
        stage = STAGES[int(token) - 1] if token.isdigit() and 1 <= int(token) <= len(STAGES) else names.get(token)
        if stage is None:
            raise UserError(f'--stages: unknown stage {token!r}; use 1-{len(STAGES)} or {", ".join(names)}')
        chosen.append(stage)
    return [s for s in STAGES if s in chosen]


def stage_seconds(stage, args, left, later):
    """What `stage` may take: its own limit, but never what the stages after it need at least."""
    own = {'training_run': args.run_seconds + 25, 'throughput': args.throughput_seconds}.get(stage.name, stage.seconds)
    return min(own, left - sum(s.reserve for s in later))


def run_stage(stage, args, seconds, workdir, log, grace=10):
    """Run one stage's process group for `seconds` (it watches its own time) plus `grace` at most; its result dict
    (a failure if it crashed or hung)."""
    path = os.path.join(workdir, f'{stage.name}.json')
    cmd = [sys.executable, '-m', 'benchmarks.gpu_stages', stage.name, '--result', path, '--workdir', workdir,
           '--seconds', f'{seconds:.0f}'] + (['--toy'] if args.toy else [])
    log.write(f'\n===== {stage.name}: {" ".join(cmd)}\n')
    log.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    tail = []

    def copy_output():
        for line in proc.stdout:
            log.write(line)
            tail.append(line)
            del tail[:-60]
    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=seconds + grace)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(timeout=10)
    log.flush()
    output_tail = ''.join(tail)[-3000:]
    if timed_out:
        return dict(status='fail', summary=f'timed out after {seconds + grace:.0f} s and was killed', output_tail=output_tail)
    if proc.returncode != 0 or not os.path.isfile(path):
        last = next((ln.strip() for ln in reversed(tail) if ln.strip()), '')
        return dict(status='fail', summary=f'exited with code {proc.returncode}: {last[-300:]}', output_tail=output_tail)
    with open(path, encoding='utf-8') as f:
        r = json.load(f)
    if r['status'] == 'fail':
        r['output_tail'] = output_tail
    return r


def _cell(text):
    return str(text).replace('|', '/').replace('\n', ' ')


def write_report(out, started, results):
    """report.md (one table) and results.json from the results so far; returns the table's text."""
    env = next((r['details'] for r in results if r['name'] == 'environment' and r['status'] == 'pass'), {})
    device = env.get('gpu', 'no CUDA GPU') if env else 'unknown device'
    lines = [f'# gpu-check: {device}, torch {env.get("torch", "?")}, CUDA {env.get("cuda", "?")} ({started})', '',
             '| # | stage | status | seconds | result |', '| --- | --- | --- | --- | --- |']
    for r in results:
        seconds = f'{r["seconds"]:.0f}' if r.get('seconds') is not None else ''
        lines.append(f'| {r["number"]} | {r["name"]} | {r["status"]} | {seconds} | {_cell(r["summary"])} |')
        for k, (label, status, summary) in enumerate(r.get('rows', []), 1):
            lines.append(f'| {r["number"]}.{k} | {_cell(label)} | {status} | | {_cell(summary)} |')
    table = '\n'.join(lines) + '\n'
    with atomic_write(os.path.join(out, 'report.md'), 'w') as f:
        f.write(table)
    with atomic_write(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(dict(started=started, stages=results), f, indent=1, default=str)
    return table


def gpu_reason():
    """Why the GPU stages cannot run here, or None when a CUDA GPU is usable."""
    import torch
    if torch.cuda.is_available():
        return None
    return f'no CUDA GPU (torch {torch.__version__}, CUDA build {torch.version.cuda})'


@cli_errors
def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix='gpu-check-'))
    os.makedirs(workdir, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec='seconds')
    deadline = time.monotonic() + args.budget
    no_gpu = gpu_reason()
    results = []
    with open(os.path.join(args.out, 'stages.log'), 'w', encoding='utf-8') as log:
        def runs(stage):
            return not (stage.needs_gpu and no_gpu) or (stage.name == 'throughput' and args.toy)
        for i, stage in enumerate(args.selected):
            number = STAGES.index(stage) + 1
            later = [s for s in args.selected[i + 1:] if runs(s)]
            seconds = stage_seconds(stage, args, deadline - time.monotonic(), later)
            if not runs(stage):
                r = dict(status='skip', summary=no_gpu)
            elif seconds < MIN_SECONDS:
                r = dict(status='skip', summary=f'no time left in the --budget of {args.budget:.0f} s')
            else:
                begin = time.monotonic()
                r = run_stage(stage, args, seconds, workdir, log)
                r['seconds'] = time.monotonic() - begin
            r.update(number=number, name=stage.name, what=stage.what)
            results.append(r)
            print(f'[{number}/{len(STAGES)}] {stage.name}: {r["status"]} - {r["summary"]}', flush=True)
            table = write_report(args.out, started, results)
    print('\n' + table, end='')
    print(f'(report: {os.path.join(args.out, "report.md")}, figures: {os.path.join(args.out, "results.json")})')
    return 1 if any(r['status'] == 'fail' for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
