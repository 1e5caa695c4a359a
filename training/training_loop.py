"""The ILSGAN training loop: phases, EMA, ADA, ticks, snapshots, metrics and exact resume.

One code path for CPU and GPU, one or many processes. Every network snapshot also writes `training-state.pt`
(networks, both Adam states, EMA, ADA state, RNG states and counters), so a run killed at any moment resumes from its
last snapshot and replays the same iterations.

The stages, in the order of an iteration: `build_models` and `build_phases` once; `run_phases` (one optimiser step
per phase due) and `update_ema` every iteration; `end_tick` (statistics, the log line) and `save_snapshot` (grids,
network snapshot, metrics, training state) once per tick.
"""
import contextlib
import copy
import dataclasses
import glob
import os
import queue
import sys
import threading
import time
from typing import List, Optional

import numpy as np
import torch
import tqdm

import dnnlib
from dnnlib.util import append_jsonl, atomic_write, fault_point, format_time, read_jsonl, write_jsonl
from torch_utils import files, misc, training_stats
from training import augment, checkpoint, loss as loss_lib, mask_stats, networks, visualize
from training.estimators import ModelBag

STATE_FILE = 'training-state.pt'
MASK_PROBES = 256  # fixed latents whose G_ema masks are checked every tick (polarity, shape diversity)


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """What a run is trained with: the training loop's keyword arguments, as training_options.json stores them."""
    G_kwargs: dict                          # PerturbGenerator constructor kwargs.
    D_kwargs: dict                          # DiscriminatorOpen constructor kwargs.
    G_opt_kwargs: dict                      # Adam kwargs (lr, betas, eps).
    D_opt_kwargs: dict
    augment_kwargs: Optional[dict] = None   # AugmentPipe kwargs, or None for no augmentation.
    loss_kwargs: Optional[dict] = None      # ILSLoss kwargs.
    estimator_kwargs: Optional[dict] = None  # ModelBag kwargs for the learned-estimator configs, or None.
    random_seed: int = 0
    num_gpus: int = 1
    batch_size: int = 32                    # Over all processes.
    batch_gpu: Optional[int] = None         # Per process and accumulation round (None: the whole per-process batch).
    ema_kimg: float = 10
    ema_rampup: Optional[float] = 0.05
    G_reg_interval: int = 4                 # Only rescales G's Adam (path-length regularisation is off in ILSGAN).
    D_reg_interval: int = 16
    augment_p: float = 0.0
    ada_target: Optional[float] = None
    ada_interval: int = 4
    ada_kimg: float = 500
    total_kimg: float = 8000
    kimg_per_tick: float = 4
    image_snapshot_ticks: int = 50
    network_snapshot_ticks: int = 50
    mask_bias_init: Optional[float] = None  # Initial mask-logit bias (networks.set_mask_logit_bias); None keeps 0.
    resume_pkl: Optional[str] = None        # Weights to start from (our snapshot or an original pickle).
    resume_partial: bool = False            # Let resume_pkl leave what it does not provide as initialised.
    resume_state: Optional[str] = None      # A training-state.pt to continue exactly.
    cudnn_benchmark: bool = True
    allow_tf32: bool = False
    grid_max_side: int = 32                 # Snapshot grids show at most this many samples per side.


@dataclasses.dataclass
class Models:
    """The trained modules with their optimisers: what a snapshot and training-state.pt hold, besides counters."""
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    bag: Optional[torch.nn.Module]          # The learned estimators (ILS_learnL/N), trained in D's optimiser.
    augment_pipe: Optional[torch.nn.Module]
    ada: Optional[augment.AdaController]
    G_opt: torch.optim.Optimizer
    D_opt: torch.optim.Optimizer


@dataclasses.dataclass
class Phase:
    """One optimiser step of ILSLoss phase `name` over `modules`, every `interval` iterations."""
    name: str
    modules: List[torch.nn.Module]          # Trained by this phase: they require grad only while it runs.
    opt: torch.optim.Optimizer
    interval: int = 1
    ddp: List[torch.nn.Module] = dataclasses.field(default_factory=list)  # Wrappers its backward passes through.


@dataclasses.dataclass
class Progress:
    """Counters (saved in training-state.pt) and the current tick's timing."""
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0
    tick_start_time: float = 0.0
    maintenance_time: float = 0.0


def snapshot_name(cur_nimg):
    return f'network-snapshot-{cur_nimg // 1000:06d}.pt'


class BatchFeeder:
    """Serves [batch, 3, R, R] uint8 batches from the dataset in the sampler's order, prefetching on a thread.

    `skip` batches are drawn and dropped up front, which puts a resumed run's data order where it left off. An error
    while reading is handed over the queue and raised by next() as a UserError, so the run stops at once instead of
    waiting forever for a batch that will not come.
    """

    def __init__(self, dataset, batch, rank, num_replicas, seed, skip=0, device='cpu'):
        self.dataset = dataset
        self.batch = batch
        self.device = torch.device(device)
        self.indices = iter(misc.InfiniteSampler(dataset, rank=rank, num_replicas=num_replicas, seed=seed))
        for _ in range(skip * batch):
            next(self.indices)
        self.queue = queue.Queue(maxsize=3)
        self.thread = threading.Thread(target=self._fill, daemon=True)
        self.thread.start()

    def _fill(self):
        try:
            while True:
                fault_point('data')
                idx = [next(self.indices) for _ in range(self.batch)]
                x = torch.from_numpy(np.stack([self.dataset[i] for i in idx]))
                if self.device.type == 'cuda':
                    x = x.pin_memory()
                self.queue.put(x)
        except BaseException as e:
            self.queue.put(e)

    def next(self):
        x = self.queue.get()
        if isinstance(x, BaseException):
            raise dnnlib.UserError(f'reading the training data failed ({type(x).__name__}: {x}); what the run wrote '
                                   f'before is intact: fix the data and resume with --resume=<run dir>') from x
        return x.to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1


class TickLog:
    """Rank 0's outputs of every tick: the console line, stats.jsonl, TensorBoard (if installed), a progress bar."""

    def __init__(self, run_dir, o, progress, start_time):
        stats_path = os.path.join(run_dir, 'stats.jsonl')
        if o.resume_state is not None:
            drop_stats_after(stats_path, progress.cur_nimg)
        self.stats_path = stats_path
        self.tfevents = _tensorboard_writer(run_dir)
        self.start_time = start_time
        self.mask_warnings = {}
        self.bar = tqdm.tqdm(total=o.total_kimg, initial=progress.cur_nimg / 1000, unit='kimg', file=sys.__stderr__,
                             dynamic_ncols=True, disable=not sys.__stderr__.isatty(),
                             bar_format='{l_bar}{bar}| {n:.1f}/{total} kimg [{elapsed}<{remaining}{postfix}]')

    def write(self, collector, stats, progress, tick_end_time, masks, snapshot_tick):
        p, mean = progress, collector.mean
        tick_sec = max(tick_end_time - p.tick_start_time, 1e-9)
        elapsed = format_time(tick_end_time - self.start_time)
        print(f'tick {p.cur_tick:<5d} kimg {p.cur_nimg / 1000:<8.1f} time {elapsed:<10s} '
              f'sec/kimg {mean("Timing/sec_per_kimg"):<7.2f} img/s {(p.cur_nimg - p.tick_start_nimg) / tick_sec:<7.1f} '
              f'G {mean("Loss/G/loss"):<6.3f} D+ {mean("Loss/scores/real"):<6.3f} '
              f'bin {mean("Loss/G/loss_bin"):<6.3f} area {mean("Loss/G/mask_area"):<5.3f} '
              f'ils {mean("Loss/G/anti_leaking"):<7.4f} inv {masks["inverted"]:.2f} shapeIoU {masks["shape_iou"]:.2f} '
              f'augment {mean("Progress/augment"):.3f}', flush=True)
        # Say it when a warning appears, and again at every image snapshot while it lasts.
        warnings = mask_stats.warnings(masks)
        if warnings.keys() != self.mask_warnings.keys() or snapshot_tick:
            for warning in warnings.values():
                print(f'WARNING at {p.cur_nimg / 1000:.1f} kimg: {warning}', flush=True)
        self.mask_warnings = warnings
        self.bar.update(p.cur_nimg / 1000 - self.bar.n)
        self.bar.set_postfix_str(f'G {mean("Loss/G/loss"):.2f} p {mean("Progress/augment"):.3f}')
        append_jsonl(self.stats_path, [dict(stats, timestamp=time.time())])
        if self.tfevents is not None:
            for name, value in stats.items():
                self.tfevents.add_scalar(name, value['mean'], global_step=int(p.cur_nimg / 1e3),
                                         walltime=time.time() - self.start_time)
            self.tfevents.flush()

    def close(self):
        self.bar.close()
        if self.tfevents is not None:
            self.tfevents.close()


def training_loop(run_dir, training_set, training_set_kwargs, rank=0, device='cpu', snapshot_metrics=None, **options):
    """Train, or continue training, the run in `run_dir`; returns the number of images shown.

    training_set: uint8 [3,R,R] items with .name and .resolution; training_set_kwargs: how to rebuild it (stored in
    the snapshots for the evaluators); snapshot_metrics(G_ema, snapshot_path, sigma): called by every rank at each
    network snapshot; options: the fields of TrainingOptions.
    """
    o = TrainingOptions(**options)
    device = torch.device(device)
    start_time = time.time()
    _setup_process(o, rank)
    batch_per_rank = o.batch_size // o.num_gpus
    batch_gpu = o.batch_gpu or batch_per_rank
    assert batch_per_rank % batch_gpu == 0
    is_main = rank == 0

    models = build_models(o, device, is_main)
    progress = Progress()
    if o.resume_state is not None:
        progress, metric_records = _load_training_state(o.resume_state, rank, models)
        if is_main:
            print(f'Resuming exactly from "{o.resume_state}" at {progress.cur_nimg / 1000:.1f} kimg')
            drop_metric_records_after(run_dir, metric_records)
    loss, phases = build_phases(o, models, device)
    grid = _SnapshotGrid(run_dir, o, training_set, models, loss, device) if is_main else None
    if grid is not None and progress.cur_nimg == 0:
        grid.save_reals(training_set)
        grid.save('_init', with_gradients=False)
    log = TickLog(run_dir, o, progress, start_time) if is_main else None

    feeder = BatchFeeder(training_set, batch_per_rank, rank, o.num_gpus, o.random_seed, skip=progress.batch_idx,
                         device=device)
    collector = training_stats.Collector(device=device)
    augment_on = models.augment_pipe is not None and float(models.augment_pipe.p) > 0
    progress.tick_start_nimg, progress.tick_start_time = progress.cur_nimg, time.time()
    done = progress.cur_nimg >= o.total_kimg * 1000
    while not done:
        loss.augment_pipe = models.augment_pipe if augment_on else None
        run_phases(phases, loss, feeder.next().split(batch_gpu), progress, models.G, device)
        update_ema(models.G_ema, models.G, loss_lib.ema_beta(o.batch_size, progress.cur_nimg, o.ema_kimg, o.ema_rampup))
        progress.cur_nimg += o.batch_size
        progress.batch_idx += 1
        fault_point('iter')
        if models.ada is not None and models.ada.step(progress.batch_idx):
            augment_on = float(models.augment_pipe.p) > 0  # One host sync every ada_interval iterations.
        done = progress.cur_nimg >= o.total_kimg * 1000
        # Tick 0 ends after the first iteration (as StyleGAN2-ADA), so kimg 0 gets a snapshot and metrics too.
        tick_end_nimg = progress.tick_start_nimg + o.kimg_per_tick * 1000
        if not done and progress.cur_tick != 0 and progress.cur_nimg < tick_end_nimg:
            continue
        sigma = end_tick(collector, log, grid, progress, loss, models.augment_pipe, device, o.image_snapshot_ticks)
        fault_point('tick')
        maintenance_start = time.time()
        save_snapshot(run_dir, o, training_set_kwargs, rank, models, progress, grid, sigma, snapshot_metrics, done)
        progress.maintenance_time = time.time() - maintenance_start
        progress.cur_tick += 1
        progress.tick_start_nimg, progress.tick_start_time = progress.cur_nimg, time.time()

    if log is not None:
        log.close()
        print(f'Training finished at {progress.cur_nimg / 1000:.1f} kimg in {format_time(time.time() - start_time)}.')
    return progress.cur_nimg


def _setup_process(o, rank):
    """Seed this process (every rank differently) and set the backend flags."""
    np.random.seed(o.random_seed * o.num_gpus + rank)
    torch.manual_seed(o.random_seed * o.num_gpus + rank)
    torch.backends.cudnn.benchmark = o.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = o.allow_tf32
    torch.backends.cudnn.allow_tf32 = o.allow_tf32


def build_models(o, device, is_main):
    """G, D, G_ema, the estimators, the augment pipe with its ADA controller and both optimisers; starting weights
    from o.resume_pkl when given (an exact resume loads everything later, from the training state)."""
    G = networks.to_device(networks.PerturbGenerator(**o.G_kwargs).train().requires_grad_(False), device)
    if o.mask_bias_init is not None:
        networks.set_mask_logit_bias(G, o.mask_bias_init)
    D = networks.to_device(networks.DiscriminatorOpen(**o.D_kwargs).train().requires_grad_(False), device)
    G_ema = copy.deepcopy(G).eval()
    bag = None
    if o.estimator_kwargs is not None:
        bag = ModelBag(**o.estimator_kwargs).train().requires_grad_(False).to(device)
        if o.num_gpus > 1 and device.type == 'cuda':  # SyncBatchNorm runs on GPUs only; CPU ranks keep their own BN.
            bag = torch.nn.SyncBatchNorm.convert_sync_batchnorm(bag)
    augment_pipe = ada = None
    if o.augment_kwargs is not None:
        augment_pipe = augment.AugmentPipe(**o.augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(o.augment_p))
        if o.ada_target is not None:
            ada = augment.AdaController(augment_pipe, o.batch_size, target=o.ada_target, interval=o.ada_interval,
                                        kimg=o.ada_kimg)

    if o.resume_pkl is not None and o.resume_state is None:
        _start_from_weights(o, {'G': G, 'D': D, 'G_ema': G_ema}, is_main)

    D_params = list(D.parameters()) + (list(bag.parameters()) if bag is not None else [])
    return Models(G=G, D=D, G_ema=G_ema, bag=bag, augment_pipe=augment_pipe, ada=ada,
                  G_opt=lazy_reg_adam(G.parameters(), o.G_opt_kwargs, o.G_reg_interval),
                  D_opt=lazy_reg_adam(D_params, o.D_opt_kwargs, o.D_reg_interval))


def _start_from_weights(o, nets, is_main):
    """Copy o.resume_pkl's weights into `nets`: all of them, unless o.resume_partial lets some stay as initialised."""
    snap = checkpoint.load_snapshot(o.resume_pkl)
    plan, unfit, _ = checkpoint.check_weights_fit(snap, nets, o.resume_pkl, partial=o.resume_partial)
    checkpoint.copy_weights(snap, nets, plan)
    if is_main:
        print(f'Resuming weights from "{o.resume_pkl}"' + (f' ({len(unfit)} tensors as initialised)' if unfit else ''))


def lazy_reg_adam(params, kwargs, reg_interval):
    """Adam with StyleGAN2's lazy-regularisation rescaling of lr and betas."""
    ratio = reg_interval / (reg_interval + 1)
    kwargs = dict(kwargs, lr=kwargs['lr'] * ratio, betas=[beta ** ratio for beta in kwargs['betas']])
    return torch.optim.Adam(params, fused=True, **kwargs)  # One pass over all parameters (4x faster on the CPU).


def build_phases(o, models, device):
    """The loss and the phases Gmain, Dmain, Dreg; with several processes, through DistributedDataParallel
    wrappers (after every rank took rank 0's weights) that all-reduce the generator step's and D's gradients."""
    m = models
    G_step, D_run, bag_run = loss_lib.LayerGeneratorStep(m.G), m.D, m.bag
    if o.num_gpus > 1:
        misc.broadcast_from_rank0([m.G, m.D, m.G_ema, m.bag, m.augment_pipe])
        device_ids = [device] if device.type == 'cuda' else None
        ddp = lambda module: torch.nn.parallel.DistributedDataParallel(  # noqa: E731
            module.requires_grad_(True), device_ids=device_ids, broadcast_buffers=False)
        G_step, D_run = ddp(G_step), ddp(m.D)
        bag_run = ddp(m.bag) if m.bag is not None else None
        for module in (m.G, m.D, m.bag):
            if module is not None:
                module.requires_grad_(False)
    loss = loss_lib.ILSLoss(device=device, G=G_step, D=D_run, augment_pipe=m.augment_pipe, estimator_bag=bag_run,
                            ada=m.ada, **(o.loss_kwargs or {}))
    wrappers = (lambda *runs: [r for r in runs if r is not None]) if o.num_gpus > 1 else (lambda *runs: [])
    phases = [Phase('Gmain', [m.G], m.G_opt, ddp=wrappers(G_step)),
              Phase('Dmain', [x for x in (m.D, m.bag) if x is not None], m.D_opt, ddp=wrappers(D_run, bag_run)),
              Phase('Dreg', [m.D], m.D_opt, interval=o.D_reg_interval, ddp=wrappers(D_run))]
    return loss, phases


def run_phases(phases, loss, real, progress, G, device):
    """One training iteration: each phase due at this batch accumulates its gradient over the rounds of `real` (one
    batch_gpu chunk each) and takes an optimiser step. Only the last round all-reduces under DDP."""
    cur_kimg = progress.cur_nimg // 1000
    for phase in phases:
        if progress.batch_idx % phase.interval != 0:
            continue
        for module in phase.modules:
            module.requires_grad_(True)
        phase.opt.zero_grad(set_to_none=True)
        for r, real_chunk in enumerate(real):
            with contextlib.ExitStack() as stack:
                if r < len(real) - 1:
                    for wrapper in phase.ddp:
                        stack.enter_context(wrapper.no_sync())
                z = torch.randn([len(real_chunk), G.z_dim], device=device)
                eps = torch.rand([len(real_chunk), G.eps_dim], device=device) * 2 - 1
                loss.accumulate_gradients(phase.name, real_chunk, z, eps, gain=phase.interval, cur_kimg=cur_kimg)
        for module in phase.modules:
            module.requires_grad_(False)
        misc.nan_to_num_([p.grad for module in phase.modules for p in module.parameters() if p.grad is not None])
        phase.opt.step()


@torch.no_grad()
def update_ema(G_ema, G, beta):
    """G_ema's weights move towards G's by 1 - beta; buffers (w_avg, noise) are copied."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def end_tick(collector, log, grid, progress, loss, augment_pipe, device, image_snapshot_ticks):
    """Report the tick's progress, timing and (rank 0) mask checks, collect the statistics of all ranks, write rank
    0's log line. Returns the ILS weight sigma at this point."""
    tick_end_time = time.time()
    p = progress
    sigma = loss.sigma(p.cur_nimg // 1000)
    training_stats.report('Progress/tick', p.cur_tick)
    training_stats.report('Progress/kimg', p.cur_nimg / 1000)
    training_stats.report('Progress/augment', float(augment_pipe.p) if augment_pipe is not None else 0)
    training_stats.report('Progress/sigma', sigma)
    training_stats.report('Timing/sec_per_kimg',
                          (tick_end_time - p.tick_start_time) / max(p.cur_nimg - p.tick_start_nimg, 1) * 1000)
    training_stats.report('Timing/maintenance_sec', p.maintenance_time)
    if device.type == 'cuda':
        training_stats.report('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(device) / 2 ** 30)
    masks = grid.check_masks() if grid is not None else None
    stats = collector.update()
    if log is not None:
        log.write(collector, stats, p, tick_end_time, masks, p.cur_tick % image_snapshot_ticks == 0)
    return sigma


def save_snapshot(run_dir, o, training_set_kwargs, rank, models, progress, grid, sigma, snapshot_metrics, done):
    """What a tick leaves on disk when due: image grids (rank 0), then the network snapshot, its metrics and last the
    training state, so that a resumed run restarts after everything this snapshot wrote."""
    m, p = models, progress
    if grid is not None and (done or p.cur_tick % o.image_snapshot_ticks == 0):
        grid.save(f'{p.cur_nimg // 1000:06d}')
    if not (done or p.cur_tick % o.network_snapshot_ticks == 0):
        return
    snap_path = os.path.join(run_dir, snapshot_name(p.cur_nimg))
    if o.num_gpus > 1:
        for name, module in [('G', m.G), ('D', m.D), ('G_ema', m.G_ema)]:
            misc.check_ddp_consistency(module, name)
        if rank == 0:
            print(f'Networks identical on all {o.num_gpus} ranks at {p.cur_nimg / 1000:.1f} kimg.')
    if rank == 0:
        checkpoint.save_snapshot(snap_path, {'G': m.G, 'D': m.D, 'G_ema': m.G_ema, 'augment_pipe': m.augment_pipe},
                                 training_set_kwargs=training_set_kwargs,
                                 extra={'kimg': p.cur_nimg // 1000, 'sigma': sigma, 'estimator': o.estimator_kwargs})
    if snapshot_metrics is not None:
        snapshot_metrics(m.G_ema, snap_path, sigma)
    next_tick = dataclasses.replace(p, cur_tick=p.cur_tick + 1)
    metric_records = metric_log_lengths(run_dir) if rank == 0 else {}
    _save_training_state(os.path.join(run_dir, STATE_FILE), rank, o.num_gpus, m, next_tick, metric_records)


class _SnapshotGrid:
    """Rank 0's views of G_ema for fixed latents: the image grids (fakes, masks, layers un-shifted | shifted, gradient
    heat-maps) and the per-tick mask check."""

    def __init__(self, run_dir, o, training_set, models, loss, device):
        self.run_dir, self.G_ema, self.loss, self.device = run_dir, models.G_ema, loss, device
        self.cols, rows = visualize.grid_shape(training_set.resolution, o.grid_max_side)
        rng = torch.Generator().manual_seed(o.random_seed)
        self.z = torch.randn([self.cols * rows, models.G.z_dim], generator=rng)
        self.eps = torch.rand([self.cols * rows, models.G.eps_dim], generator=rng) * 2 - 1
        self.probe_z = torch.randn([MASK_PROBES, models.G.z_dim], generator=rng)

    def save_reals(self, training_set):
        n = len(self.z)
        reals = torch.from_numpy(np.stack([training_set[i % len(training_set)] for i in range(n)]))
        visualize.save_grid(visualize.to_uint8(reals.float(), (0, 255)), os.path.join(self.run_dir, 'reals.png'),
                            cols=self.cols)

    def save(self, tag, with_gradients=True):
        layers, shifted = _generate_grid(self.G_ema, self.z, self.eps, self.device)
        path = lambda name: os.path.join(self.run_dir, f'{name}{tag}.png')  # noqa: E731
        visualize.save_grid(visualize.to_uint8(layers['img']), path('fakes'), cols=self.cols)
        visualize.save_grid(visualize.to_uint8(layers['mask'], (0, 1)), path('masks'), cols=self.cols)
        n = min(16, len(self.z))
        visualize.save_layer_grid({k: v[:n] for k, v in layers.items()}, {k: v[:n] for k, v in shifted.items()},
                                  path('layers'))
        if with_gradients:
            # Heat-maps of the training G's loss gradients (adversarial + mask terms), as the original's grads grid.
            z, eps = self.z[:n].to(self.device), self.eps[:n].to(self.device)
            shifted_g, g_img, g_mask = self.loss.gradient_maps(z, eps)
            visualize.save_gradient_grid({k: v.cpu() for k, v in shifted_g.items()}, g_img.cpu(), g_mask.cpu(),
                                         path('grads'))


    @torch.no_grad()
    def check_masks(self, batch=64):
        """mask_stats.summarize of G_ema's masks for the probe latents (is the mask the object, and varied?), also
        reported as Masks/* statistics."""
        masks = [self.G_ema(z.to(self.device), None, noise_mode='const', return_layers=True)['mask'].cpu()
                 for z in self.probe_z.split(batch)]
        summary = mask_stats.summarize(torch.cat(masks))
        for name, value in summary.items():
            training_stats.report(f'Masks/{name}', value)
        return summary


@torch.no_grad()
def _generate_grid(G, z, eps, device, batch=64):
    """(layers, shifted layers) of G.generate_layer for all of z, on the CPU."""
    layers, shifted = [], []
    for zb, eb in zip(z.split(batch), eps.split(batch)):
        lb, sb, _ = G.generate_layer(zb.to(device), None, eb.to(device), noise_mode='const')
        layers.append({k: v.cpu() for k, v in lb.items()})
        shifted.append({k: v.cpu() for k, v in sb.items()})
    return [{k: torch.cat([d[k] for d in dicts]) for k in dicts[0]} for dicts in (layers, shifted)]


def drop_stats_after(path, cur_nimg):
    """A resumed run replays the ticks after its last snapshot: drop their old lines (and a half-written last one)
    so that stats.jsonl holds each tick once."""
    if os.path.isfile(path):
        write_jsonl(path, [r for r in _stats_records(path) if r['Progress/kimg']['mean'] <= cur_nimg / 1000 + 1e-9])


def _stats_records(path):
    records = read_jsonl(path)
    if any('Progress/kimg' not in r for r in records):
        raise dnnlib.UserError(f'{path} holds a record without Progress/kimg, which training never writes; repair or '
                               f'delete that line')
    return records


def check_resumable(run_dir, state_path):
    """What an exact resume of `run_dir` reads, checked before anything there is touched: the checksums of the
    training state and every line of the run's logs. A damaged one is a UserError naming it."""
    files.check(state_path, STATE_FILE)
    _stats_records(os.path.join(run_dir, 'stats.jsonl'))
    metric_log_lengths(run_dir)


def metric_log_lengths(run_dir):
    """{metric-<name>.jsonl: the records it holds} for the run's metric logs."""
    return {os.path.basename(path): len(read_jsonl(path))
            for path in glob.glob(os.path.join(glob.escape(run_dir), 'metric-*.jsonl'))}


def drop_metric_records_after(run_dir, lengths):
    """A resumed run replays the snapshots after its training state, and scores them again: drop what they wrote
    before (the records past `lengths`, from metric_log_lengths at that state), so each snapshot is scored once."""
    for name, count in lengths.items():
        path = os.path.join(run_dir, name)
        records = read_jsonl(path)
        if len(records) > count:
            write_jsonl(path, records[:count])


def _tensorboard_writer(run_dir):
    try:
        import torch.utils.tensorboard as tensorboard
        return tensorboard.SummaryWriter(run_dir)
    except ImportError:
        return None


def _rng_state():
    # numpy's state as plain values, so that training-state.pt loads with weights_only=True.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'torch': torch.get_rng_state(),
             'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state['torch'])
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _all_ranks(obj, num_gpus):
    """Gather a picklable object from every rank (a one-element list on a single process)."""
    if num_gpus == 1:
        return [obj]
    out = [None] * num_gpus
    torch.distributed.all_gather_object(out, obj)
    return out


def _optional_state(module):
    return module.state_dict() if module is not None else None


def _save_training_state(path, rank, num_gpus, models, progress, metric_records):
    """metric_records: metric_log_lengths of the run now, which a resume restores (drop_metric_records_after)."""
    m = models
    rng = _all_ranks(_rng_state(), num_gpus)
    ada_states = _all_ranks(_optional_state(m.ada), num_gpus)
    if rank != 0:
        return
    state = {
        'G': m.G.state_dict(), 'D': m.D.state_dict(), 'G_ema': m.G_ema.state_dict(), 'bag': _optional_state(m.bag),
        'augment_pipe': _optional_state(m.augment_pipe), 'ada': ada_states,
        'G_opt': m.G_opt.state_dict(), 'D_opt': m.D_opt.state_dict(), 'rng': rng,
        'cur_nimg': progress.cur_nimg, 'cur_tick': progress.cur_tick, 'batch_idx': progress.batch_idx,
        'metric_records': metric_records,
    }
    with atomic_write(path) as f:
        torch.save(state, f)


def _load_training_state(path, rank, models):
    """Load everything _save_training_state wrote into `models` and this rank's RNGs; returns the Progress and the
    metric log lengths. A damaged file, or one of another configuration, is a UserError naming it."""
    state = files.load(path, STATE_FILE)
    try:
        progress = _restore(state, path, rank, models)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise dnnlib.UserError(f'{path} does not fit this run ({" ".join(str(e).split())[:160]}); restore its own '
                               f'{STATE_FILE}, or start a new run from a snapshot with --resume=<snapshot>') from None
    return progress, state.get('metric_records', {})


def _restore(state, path, rank, models):
    m = models
    m.G.load_state_dict(state['G'])
    m.D.load_state_dict(state['D'])
    m.G_ema.load_state_dict(state['G_ema'])
    if m.bag is not None:
        m.bag.load_state_dict(state['bag'])
    if m.augment_pipe is not None and state['augment_pipe'] is not None:
        m.augment_pipe.load_state_dict(state['augment_pipe'])
    if m.ada is not None and state['ada'][rank] is not None:
        m.ada.load_state_dict(state['ada'][rank])
    m.G_opt.load_state_dict(state['G_opt'])
    m.D_opt.load_state_dict(state['D_opt'])
    if rank >= len(state['rng']):
        raise dnnlib.UserError(f'{path} was written by {len(state["rng"])} processes; resume with the same --gpus')
    _set_rng_state(state['rng'][rank])
    return Progress(cur_nimg=state['cur_nimg'], cur_tick=state['cur_tick'], batch_idx=state['batch_idx'])
