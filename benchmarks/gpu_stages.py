"""The stages of benchmarks/gpu_check.py. Each runs in a process of its own:

    python -m benchmarks.gpu_stages STAGE --result FILE --workdir DIR --seconds S [--toy]

and writes {status: pass|fail|skip, summary: one line, details: {...}, rows: [[label, status, summary], ...]} to
FILE. `rows` are sub-results for the report's table. `--seconds` is the time the stage has; a stage that runs
sub-cases stops starting new ones when it runs out. `--toy` shrinks the throughput cases so that they run on a CPU.
"""
import argparse
import concurrent.futures
import glob
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import warnings
import xml.etree.ElementTree as ET

import click
import torch
import torch.nn.functional as F
from torch.utils import cpp_extension

from metrics.report import read_jsonl
from pipeline import train_cli
from torch_utils import custom_ops
from torch_utils.ops import bias_act, cuda_plugins, upfirdn2d
from training import networks, presets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = ('bias_act', 'upfirdn2d')


def result(status, summary, details=None, rows=()):
    return dict(status=status, summary=summary, details=details or {}, rows=[list(r) for r in rows])


def _command_output(cmd, line=0):
    """One line (by index) of `cmd`'s output, or None when the program is missing or fails."""
    if cmd[0] is None or shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[line].strip() if out else None


def environment(opts):
    d = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             cpus=os.cpu_count(), ninja=cpp_extension.is_ninja_available(), cuda_home=cpp_extension.CUDA_HOME,
             driver=_command_output(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader']))
    nvcc = shutil.which('nvcc') or (os.path.join(cpp_extension.CUDA_HOME, 'bin', 'nvcc') if cpp_extension.CUDA_HOME else None)
    d['nvcc'] = _command_output([nvcc, '--version'], line=-1)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        d.update(gpu=props.name, gpus=torch.cuda.device_count(), gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                 capability=f'{props.major}.{props.minor}')
        gpu = f'{props.name} ({d["gpu_memory_gib"]} GiB, sm_{props.major}{props.minor}), driver {d["driver"]}'
    else:
        gpu = 'no CUDA GPU'
    summary = f'{gpu}; CUDA {d["cuda"]}, torch {d["torch"]}, cuDNN {d["cudnn"]}, Python {d["python"]}, {d["cpus"]} CPUs'
    return result('pass', summary, d)


def _build_plugin(name):
    """Build one plugin in this (fresh) process: (loaded, seconds, fallback warning)."""
    os.environ.setdefault('ILSGAN_CUDA_OPS_VERBOSE', '1')  # The full compiler log goes into the stage's log.
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        op = cuda_plugins._get_op(name)
    fallback = [str(w.message) for w in caught if 'Falling back' in str(w.message)]
    return op is not None, time.perf_counter() - start, '; '.join(fallback)


def _max_rel(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))


def _check_ops(device):
    """What the dispatchers compute on CUDA (the plugin, or the fallback when it did not build) against the
    pure-PyTorch references, forward and one gradient: max relative errors."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn([8, 64, 16, 16], device=device, generator=g, requires_grad=True)
    b = torch.randn([64], device=device, generator=g)
    y = bias_act.bias_act(x, b, act='lrelu', clamp=256)
    y_ref = bias_act._bias_act_ref(x, b, act='lrelu', clamp=256)
    dy = torch.randn(y.shape, device=device, generator=g)
    errors = {'bias_act': max(_max_rel(y, y_ref), _max_rel(*[torch.autograd.grad(t, x, dy)[0] for t in (y, y_ref)]))}
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    z = upfirdn2d.upsample2d(x, f)
    z_ref = upfirdn2d._upfirdn2d_ref(x, f, up=2, padding=[2, 1, 2, 1], gain=4)
    dz = torch.randn(z.shape, device=device, generator=g)
    errors['upfirdn2d'] = max(_max_rel(z, z_ref), _max_rel(*[torch.autograd.grad(t, x, dz)[0] for t in (z, z_ref)]))
    return errors


def plugins(opts):
    if custom_ops.plugins_disabled():
        return result('fail', 'ILSGAN_NO_CUDA_OPS is set: the plugins are disabled, nothing was built')
    # Both builds at once, each in a fresh process (get_plugin serialises builds within a process); this process
    # then loads them from the build cache.
    with concurrent.futures.ProcessPoolExecutor(len(PLUGINS), mp_context=multiprocessing.get_context('spawn')) as pool:
        builds = dict(zip(PLUGINS, pool.map(_build_plugin, PLUGINS)))
    loaded = cuda_plugins.is_available()
    errors = _check_ops(torch.device('cuda'))
    rows, details = [], {}
    for name in PLUGINS:
        ok, seconds, fallback = builds[name]
        how = f'built in {seconds:.0f} s' if ok else f'build failed after {seconds:.0f} s: {fallback}; the pure-PyTorch ' \
                                                   f'fallback took over'
        rows.append([f'plugin {name}', 'pass' if ok and errors[name] < 1e-3 else 'fail',
                     f'{how}; max rel. error vs the reference {errors[name]:.1e}'])
        details[name] = dict(built=ok, seconds=seconds, fallback_warning=fallback, max_rel_error=errors[name])
    ok = loaded and all(r[1] == 'pass' for r in rows)
    summary = 'both plugins built and match the reference' if ok else '; '.join(f'{r[0]}: {r[2]}' for r in rows)
    return result('pass' if ok else 'fail', summary, details, rows)


def cuda_tests(opts):
    junit = os.path.join(opts.workdir, 'cuda-tests.xml')
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-p', 'benchmarks.pytest_cuda_only',
           f'--junitxml={junit}', 'tests']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout[-20000:], proc.stderr[-5000:], sep='\n')
    if not os.path.isfile(junit):
        return result('fail', f'pytest exited with code {proc.returncode} and wrote no report', dict(returncode=proc.returncode))
    counts, failed = junit_counts(junit)
    summary = (f'{counts["passed"]} passed, {counts["failed"]} failed, {counts["errors"]} errors, {counts["skipped"]} '
               f'skipped of {counts["tests"]} CUDA-only tests' + (f'; failed: {", ".join(failed[:8])}' if failed else ''))
    ok = counts['tests'] > 0 and counts['failed'] == counts['errors'] == 0
    return result('pass' if ok else 'fail', summary, dict(counts, failed_tests=failed, returncode=proc.returncode))


def junit_counts(path):
    """(counts, names of failed tests) from a pytest --junitxml report."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == 'testsuite' else list(root.iter('testsuite'))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ('tests', 'failures', 'errors', 'skipped')}
    failed = [f'{case.get("classname", "").rsplit(".", 1)[-1]}::{case.get("name")}'
              for s in suites for case in s.iter('testcase') if case.find('failure') is not None or case.find('error') is not None]
    counts = dict(tests=counts['tests'], failed=counts['failures'], errors=counts['errors'], skipped=counts['skipped'],
                  passed=counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped'])
    return counts, failed


def preset_networks(script_resolution, cfg, device):
    """G and D exactly as the training command line builds them for `--cfg`, on `device`."""
    cfg_names, default_cfg = presets.SCRIPT_PRESETS[script_resolution]
    command = click.command()(train_cli.click_options(cfg_names, default_cfg, False)(lambda **o: o))
    opts = command.main(['--cfg', cfg, '--metrics', 'none'], standalone_mode=False)
    _, kwargs, _ = train_cli.build_options(opts, script_resolution, cfg_names)
    G = networks.to_device(networks.PerturbGenerator(**kwargs['G_kwargs']), device).train()
    D = networks.to_device(networks.DiscriminatorOpen(**kwargs['D_kwargs']), device).train()
    return G, D, kwargs


def _precision_pass(G, D, z, eps, force_fp32, g_param, d_param):
    for module in (G, D):
        module.zero_grad(set_to_none=True)
        module.requires_grad_(True)
    _, shifted, _ = G.generate_layer(z, None, eps, noise_mode='const', force_fp32=force_fp32)
    logits = D(shifted['img'], None, force_fp32=force_fp32)
    F.softplus(-logits).mean().backward()
    grads = [p.grad for m in (G, D) for p in m.parameters() if p.grad is not None]
    finite = all(bool(torch.isfinite(t).all()) for t in [shifted['img'], shifted['mask'], logits] + grads)
    return dict(img=shifted['img'].detach().float(), mask=shifted['mask'].detach().float(), logits=logits.detach().float(),
                g_grad=g_param.grad.detach().float().clone(), d_grad=d_param.grad.detach().float().clone(), finite=finite)


def fp16(opts):
    device = torch.device('cuda')
    limits = dict(img=2e-2, mask=2e-2, logits=5e-2, g_grad=1e-1, d_grad=1e-1)
    rows, details = [], {}
    for script_res, cfg in ((64, 'ILS_predL'), (128, 'ILS')):
        torch.manual_seed(0)
        G, D, kwargs = preset_networks(script_res, cfg, device)
        res = G.img_resolution
        g_param, d_param = G.synthesis_fg.get_submodule(f'b{res}').conv1.weight, D.get_submodule(f'b{res}').conv0.weight
        z = torch.randn([8, G.z_dim], device=device)
        eps = torch.rand([8, G.eps_dim], device=device) * 2 - 1
        ref = _precision_pass(G, D, z, eps, True, g_param, d_param)
        half = _precision_pass(G, D, z, eps, False, g_param, d_param)
        errors = {k: float((half[k] - ref[k]).norm() / ref[k].norm().clamp(min=1e-12)) for k in limits}
        ok = half['finite'] and ref['finite'] and all(errors[k] < limits[k] for k in limits)
        fp16_res = kwargs['G_kwargs']['synthesis_kwargs']['num_fp16_res']
        rows.append([f'fp16 {res} px {cfg}', 'pass' if ok else 'fail',
                     f'{fp16_res} fp16 resolutions, finite {half["finite"]}; rel. error vs fp32: '
                     + ', '.join(f'{k} {v:.1e}' for k, v in errors.items())])
        details[f'{res}px_{cfg}'] = dict(errors=errors, finite=half['finite'], limits=limits, num_fp16_res=fp16_res)
    ok = all(r[1] == 'pass' for r in rows)
    return result('pass' if ok else 'fail', 'fp16 within limits at 64 and 128 px' if ok else 'see the rows', details, rows)


# Throughput cases: (label, module, arguments, seconds it may take at most). Compiled cases come last: the stage
# starts a case only while time is left, so a slow compile costs only the cases after it.
_GPU_CASES = [
    ('train 64 px ILS_predL b32', 'bench_train_step', '--preset ILS_predL --res 64 --batch 32 --impl both --iters 8 --warmup 3', 90),
    ('train 128 px ILS b32', 'bench_train_step', '--preset ILS --res 128 --batch 32 --impl both --iters 6 --warmup 2', 120),
    ('generate 64 px b64', 'bench_generate', '--preset ILS_predL --res 64 --batch 64 --impl both --iters 10 --warmup 2', 60),
    ('U-Net 64 px b64', 'bench_unet', '--sizes 64 --iters 20', 60),
    ('MINE separate b64', 'bench_mine', '--iters 20', 60),
    ('MINE separate b64, compiled', 'bench_mine', '--iters 20 --compile', 120),
    ('U-Net 64 px b64, compiled', 'bench_unet', '--sizes 64 --iters 20 --compile', 150),
    ('generate 64 px b64, compiled', 'bench_generate', '--preset ILS_predL --res 64 --batch 64 --impl ours --iters 10 --warmup 2 --compile', 180),
    ('train 64 px ILS_predL b32, G compiled', 'bench_train_step', '--preset ILS_predL --res 64 --batch 32 --impl ours --iters 8 --warmup 3 --compile', 240),
]
_TOY = '--res 16 --channel-base 256 --channel-max 32 --map 2 --batch 4 --impl both --iters 1 --warmup 0 --threads 1'
# On a loaded CI host a toy case is mostly process start-up; the limits only stop a hung one.
_TOY_CASES = [
    ('train toy', 'bench_train_step', _TOY, 900),
    ('generate toy', 'bench_generate', _TOY, 900),
    ('U-Net toy', 'bench_unet', '--sizes 16 --batch 2 --iters 1 --warmup 0', 900),
    ('MINE toy', 'bench_mine', '--res 8 --hidden 16 --batch 8 --iters 2', 900),
]


def _describe(r):
    """One line for a bench's JSON result."""
    if r['bench'] in ('train_step', 'generate'):
        unit = r['unit']
        parts = []
        for impl, v in r['results'].items():
            mem = f', {v["peak_mem_gib"]:.1f} GiB' if v.get('peak_mem_gib') is not None else ''
            parts.append(f'{impl} {v["img_s"]:.0f} img/s ({v["ms"]:.1f} ms/{unit}{mem})')
        speedup = f'; {r["speedup"]:.2f}x' if r.get('speedup') else ''
        return ', '.join(parts) + speedup
    if r['bench'] == 'unet':
        return f'{r["it_s"]:.2f} it/s ({r["img_s"]:.0f} img/s)'
    return f'{r["it_s"]:.2f} it/s'


def run_case(module, arguments, timeout):
    """Run benchmarks.<module> with --json in its own process group; (parsed JSON objects, error or None)."""
    cmd = [sys.executable, '-m', f'benchmarks.{module}', *arguments.split(), '--json']
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        print(out[-5000:])
        return [], f'timed out after {timeout:.0f} s'
    print(out[-10000:])
    objects = [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    if proc.returncode != 0 or not objects:
        last = next((ln for ln in reversed(out.strip().splitlines()) if ln.strip()), '')
        return objects, f'exited with code {proc.returncode}: {last[-300:]}'
    return objects, None


def throughput(opts):
    deadline = time.monotonic() + opts.seconds - 5
    rows, details = [], {}
    for label, module, arguments, limit in (_TOY_CASES if opts.toy else _GPU_CASES):
        left = deadline - time.monotonic()
        if left < 15:
            rows.append([label, 'skip', 'no time left in this stage'])
            continue
        objects, error = run_case(module, arguments, min(limit, left))
        details[label] = dict(command=f'python -m benchmarks.{module} {arguments}', results=objects, error=error)
        rows.append([label, 'fail' if error else 'pass', error or '; '.join(_describe(o) for o in objects)])
    failed = [r[0] for r in rows if r[1] == 'fail']
    ran = [r for r in rows if r[1] == 'pass']
    status = 'fail' if failed else ('pass' if ran else 'skip')
    summary = f'{len(ran)} of {len(rows)} cases ran' + (f'; failed: {", ".join(failed)}' if failed else '')
    return result(status, summary, details, rows)


def summarise_run(lines):
    """kimg/s (training only, and overall with the snapshots), snapshot seconds and the final mask area."""
    def mean(line, key):
        return line.get(key, {}).get('mean', math.nan)
    steady = [1 / mean(line, 'Timing/sec_per_kimg') for line in lines[1:] if mean(line, 'Timing/sec_per_kimg') > 0]
    kimg = [mean(line, 'Progress/kimg') for line in lines]
    span = lines[-1]['timestamp'] - lines[0]['timestamp'] if len(lines) > 1 else math.nan
    return dict(ticks=len(lines), kimg=kimg[-1] if kimg else 0.0,
                kimg_per_s=sorted(steady)[len(steady) // 2] if steady else math.nan,
                overall_kimg_per_s=(kimg[-1] - kimg[0]) / span if len(lines) > 1 and span > 0 else math.nan,
                snapshot_s=max((mean(line, 'Timing/maintenance_sec') for line in lines[1:]), default=math.nan),
                mask_area=mean(lines[-1], 'Loss/G/mask_area') if lines else math.nan,
                peak_gpu_mem_gib=max((mean(line, 'Resources/peak_gpu_mem_gb') for line in lines), default=math.nan),
                finite=all(math.isfinite(mean(line, 'Loss/G/loss')) for line in lines))


def training_run(opts):
    outdir = os.path.join(opts.workdir, 'runs')
    env = dict(os.environ, ILSGAN_CACHE_DIR=os.path.join(opts.workdir, 'cache'), PYTHONUNBUFFERED='1')
    cmd = [sys.executable, 'train_ILS_64.py', f'--outdir={outdir}', '--data=synthetic', '--cfg=ILS_predL', '--batch=32',
           '--metrics=none', '--no-auto-test', '--snap=10', '--kimg=100000']
    length = max(opts.seconds - 20, 30)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        proc.wait(timeout=length)
        ended = f'exited with code {proc.returncode} after {time.monotonic() - start:.0f} s'
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        ended = f'stopped after {length:.0f} s'
    paths = glob.glob(os.path.join(outdir, '*', 'stats.jsonl'))
    lines = read_jsonl(paths[0]) if paths else []  # Without a half-written last line of a stopped run.
    if len(lines) < 2:
        return result('fail', f'{ended}; {len(lines)} ticks in stats.jsonl (need 2)', dict(command=' '.join(cmd)))
    s = summarise_run(lines)
    s.update(command=' '.join(cmd), ended=ended, snapshots=len(glob.glob(os.path.join(outdir, '*', 'network-snapshot-*.pt'))))
    summary = (f'{ended}: {s["kimg"]:.1f} kimg in {s["ticks"]} ticks; {s["kimg_per_s"] * 1000:.0f} img/s training, '
               f'{s["overall_kimg_per_s"] * 1000:.0f} img/s with {s["snapshots"]} snapshots (longest '
               f'{s["snapshot_s"]:.1f} s); mask area {s["mask_area"]:.3f}; peak {s["peak_gpu_mem_gib"]:.1f} GiB')
    return result('pass' if s['finite'] else 'fail', summary + ('' if s['finite'] else '; the G loss is not finite'), s)


def torchrun_nccl(opts):
    out = os.path.join(opts.workdir, 'nccl.json')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', '-m',
           'benchmarks.nccl_smoke', '--result', out]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='4'))
    print(proc.stdout[-10000:], proc.stderr[-10000:], sep='\n')
    if proc.returncode != 0 or not os.path.isfile(out):
        last = next((ln for ln in reversed(proc.stderr.strip().splitlines()) if ln.strip()), '')
        return result('fail', f'torchrun exited with code {proc.returncode}: {last[-300:]}')
    with open(out, encoding='utf-8') as f:
        r = json.load(f)
    ok = r['backend'] == 'nccl' and r['finite'] and r['all_reduce'] == r['world']
    return result('pass' if ok else 'fail', f'{r["backend"]}, world {r["world"]}: {r["steps"]} DDP iterations '
                  f'(Gmain, Dmain, Dreg), stats all-reduce and replica check in {r["seconds"]:.0f} s; finite {r["finite"]}', r)


STAGES = {f.__name__: f for f in (environment, plugins, cuda_tests, fp16, throughput, training_run, torchrun_nccl)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('stage', choices=list(STAGES))
    p.add_argument('--result', required=True)
    p.add_argument('--workdir', required=True)
    p.add_argument('--seconds', type=float, default=600)
    p.add_argument('--toy', action='store_true')
    opts = p.parse_args()
    os.makedirs(opts.workdir, exist_ok=True)
    r = STAGES[opts.stage](opts)
    with open(opts.result, 'w', encoding='utf-8') as f:
        json.dump(r, f, indent=1, default=str)


if __name__ == '__main__':
    main()
