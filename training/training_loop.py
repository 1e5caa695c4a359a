"""The ILSGAN training loop: phases, EMA, ADA, ticks, snapshots, metrics and exact resume.

One code path for CPU and GPU, one or many processes. Every network snapshot also writes `training-state.pt`
(networks, both Adam states, EMA, ADA state, RNG states and counters), so a run killed at any moment resumes from its
last snapshot and replays the same iterations.
"""
import copy
import json
import os
import queue
import sys
import threading
import time

import numpy as np
import torch
import tqdm

import dnnlib
from dnnlib.util import atomic_write, format_time
from torch_utils import misc, training_stats
from training import augment, checkpoint, loss as loss_lib, networks, visualize
from training.estimators import ModelBag

STATE_FILE = 'training-state.pt'


def snapshot_name(cur_nimg):
    return f'network-snapshot-{cur_nimg // 1000:06d}.pt'


class BatchFeeder:
    """Serves [batch, 3, R, R] uint8 batches from the dataset in the sampler's order, prefetching on a thread.

    `skip` batches are drawn and dropped up front, which puts a resumed run's data order where it left off.
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
        while True:
            idx = [next(self.indices) for _ in range(self.batch)]
            x = torch.from_numpy(np.stack([self.dataset[i] for i in idx]))
            if self.device.type == 'cuda':
                x = x.pin_memory()
            self.queue.put(x)

    def next(self):
        return self.queue.get().to(self.device, non_blocking=True).to(torch.float32) / 127.5 - 1


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


def training_loop(
    run_dir,
    training_set,                 # datasets.ImageArrayDataset (uint8 [3,R,R] items, .name, .resolution).
    training_set_kwargs,          # How to rebuild the dataset (stored in snapshots for the evaluators).
    G_kwargs, D_kwargs,           # PerturbGenerator / DiscriminatorOpen constructor kwargs.
    G_opt_kwargs, D_opt_kwargs,   # Adam kwargs (lr, betas, eps).
    augment_kwargs=None,          # AugmentPipe kwargs, or None for no augmentation.
    loss_kwargs={},               # ILSLoss kwargs.
    estimator_kwargs=None,        # ModelBag kwargs for the learned-estimator configs, or None.
    snapshot_metrics=None,        # Called as snapshot_metrics(G_ema, snapshot_path, sigma) at every network snapshot.
    random_seed=0, num_gpus=1, rank=0, device='cpu',
    batch_size=32, batch_gpu=None,
    ema_kimg=10, ema_rampup=0.05,
    G_reg_interval=4, D_reg_interval=16,
    augment_p=0.0, ada_target=None, ada_interval=4, ada_kimg=500,
    total_kimg=8000, kimg_per_tick=4, image_snapshot_ticks=50, network_snapshot_ticks=50,
    resume_pkl=None,              # Weights to start from (our snapshot or an original pickle).
    resume_state=None,            # A training-state.pt to continue exactly.
    cudnn_benchmark=True, allow_tf32=False,
    grid_max_side=32,             # Snapshot grids show at most this many samples per side.
):
    device = torch.device(device)
    start_time = time.time()
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    batch_per_rank = batch_size // num_gpus
    batch_gpu = batch_gpu or batch_per_rank
    assert batch_per_rank % batch_gpu == 0
    num_rounds = batch_per_rank // batch_gpu
    is_main = rank == 0

    # Networks.
    G = networks.to_device(networks.PerturbGenerator(**G_kwargs).train().requires_grad_(False), device)
    D = networks.to_device(networks.DiscriminatorOpen(**D_kwargs).train().requires_grad_(False), device)
    G_ema = copy.deepcopy(G).eval()
    bag = None
    if estimator_kwargs is not None:
        bag = ModelBag(**estimator_kwargs).train().requires_grad_(False).to(device)
        if num_gpus > 1 and device.type == 'cuda':  # SyncBatchNorm runs on GPUs only; CPU ranks keep their own BN.
            bag = torch.nn.SyncBatchNorm.convert_sync_batchnorm(bag)
    augment_pipe = None
    ada = None
    if augment_kwargs is not None:
        augment_pipe = augment.AugmentPipe(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(augment_p))
        if ada_target is not None:
            ada = augment.AdaController(augment_pipe, batch_size, target=ada_target, interval=ada_interval, kimg=ada_kimg)

    if resume_pkl is not None and resume_state is None:
        if is_main:
            print(f'Resuming weights from "{resume_pkl}"')
        snap = checkpoint.load_snapshot(resume_pkl)
        for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
            if snap.get(name) is not None:
                misc.copy_params_and_buffers(snap[name], module, require_all=False)

    # Optimisers, with StyleGAN2's lazy-regularisation rescaling of lr and betas.
    def make_opt(params, kwargs, reg_interval):
        ratio = reg_interval / (reg_interval + 1)
        kwargs = dict(kwargs, lr=kwargs['lr'] * ratio, betas=[beta ** ratio for beta in kwargs['betas']])
        return torch.optim.Adam(params, **kwargs)
    G_opt = make_opt(G.parameters(), G_opt_kwargs, G_reg_interval)
    D_params = list(D.parameters()) + (list(bag.parameters()) if bag is not None else [])
    D_opt = make_opt(D_params, D_opt_kwargs, D_reg_interval)

    # Progress counters, possibly restored.
    cur_nimg, cur_tick, batch_idx = 0, 0, 0
    if resume_state is not None:
        cur_nimg, cur_tick, batch_idx = _load_training_state(resume_state, rank, G, D, G_ema, bag, augment_pipe, ada, G_opt, D_opt)
        if is_main:
            print(f'Resuming exactly from "{resume_state}" at {cur_nimg / 1000:.1f} kimg')

    # Distributed wrappers: the generator step and D get their gradients all-reduced.
    if num_gpus > 1:
        misc.broadcast_from_rank0([G, D, G_ema, bag, augment_pipe])
    G_step = loss_lib.LayerGeneratorStep(G)
    D_run, bag_run = D, bag
    if num_gpus > 1:
        ddp = lambda m: torch.nn.parallel.DistributedDataParallel(m, device_ids=[device] if device.type == 'cuda' else None, broadcast_buffers=False)  # noqa: E731
        G_step = ddp(G_step.requires_grad_(True))
        D_run = ddp(D.requires_grad_(True))
        if bag is not None:
            bag_run = ddp(bag.requires_grad_(True))
        G.requires_grad_(False)
        D.requires_grad_(False)
        if bag is not None:
            bag.requires_grad_(False)
    loss = loss_lib.ILSLoss(device=device, G=G_step, D=D_run, augment_pipe=augment_pipe, estimator_bag=bag_run,
                            ada=ada, **loss_kwargs)

    phases = [dnnlib.EasyDict(name='Gmain', module=G, opt=G_opt, interval=1, extra=[]),
              dnnlib.EasyDict(name='Dmain', module=D, opt=D_opt, interval=1, extra=[bag] if bag is not None else []),
              dnnlib.EasyDict(name='Dreg', module=D, opt=D_opt, interval=D_reg_interval, extra=[])]

    # Outputs.
    stats_jsonl = None
    stats_tfevents = None
    grid_z = grid_eps = None
    if is_main:
        if resume_state is not None:
            drop_stats_after(os.path.join(run_dir, 'stats.jsonl'), cur_nimg)
        stats_jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at', encoding='utf-8')
        stats_tfevents = _tensorboard_writer(run_dir)
        gw, gh = visualize.grid_shape(training_set.resolution, grid_max_side)
        grid_rng = torch.Generator().manual_seed(random_seed)
        grid_z = torch.randn([gw * gh, G.z_dim], generator=grid_rng)
        grid_eps = torch.rand([gw * gh, G.eps_dim], generator=grid_rng) * 2 - 1
        if cur_nimg == 0:
            reals = torch.from_numpy(np.stack([training_set[i % len(training_set)] for i in range(gw * gh)]))
            visualize.save_grid(visualize.to_uint8(reals.float(), (0, 255)), os.path.join(run_dir, 'reals.png'), cols=gw)
            _save_image_snapshot(run_dir, '_init', G_ema, loss, grid_z, grid_eps, gw, device)

    feeder = BatchFeeder(training_set, batch_per_rank, rank, num_gpus, random_seed, skip=batch_idx, device=device)
    collector = training_stats.Collector(device=device)
    augment_on = augment_pipe is not None and float(augment_pipe.p) > 0
    bar = tqdm.tqdm(total=total_kimg, initial=cur_nimg / 1000, unit='kimg', file=sys.__stderr__, dynamic_ncols=True,
                    disable=not (is_main and sys.__stderr__.isatty()), bar_format='{l_bar}{bar}| {n:.1f}/{total} kimg [{elapsed}<{remaining}{postfix}]')
    tick_start_nimg = cur_nimg
    tick_start_time = time.time()
    maintenance_time = 0.0
    done = cur_nimg >= total_kimg * 1000

    while not done:
        real = feeder.next().split(batch_gpu)
        cur_kimg = cur_nimg // 1000
        loss.augment_pipe = augment_pipe if augment_on else None
        for phase in phases:
            if batch_idx % phase.interval != 0:
                continue
            phase.module.requires_grad_(True)
            for m in phase.extra:
                m.requires_grad_(True)
            phase.opt.zero_grad(set_to_none=True)
            for r in range(num_rounds):
                z = torch.randn([batch_gpu, G.z_dim], device=device)
                eps = torch.rand([batch_gpu, G.eps_dim], device=device) * 2 - 1
                loss.accumulate_gradients(phase.name, real[r], z, eps, gain=phase.interval, cur_kimg=cur_kimg)
            phase.module.requires_grad_(False)
            for m in phase.extra:
                m.requires_grad_(False)
            params = [p for m in [phase.module] + phase.extra for p in m.parameters() if p.grad is not None]
            misc.nan_to_num_([p.grad for p in params])
            phase.opt.step()

        # EMA of G's weights; buffers (w_avg, noise) are copied.
        with torch.no_grad():
            beta = loss_lib.ema_beta(batch_size, cur_nimg, ema_kimg, ema_rampup)
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)

        cur_nimg += batch_size
        batch_idx += 1
        if ada is not None and ada.step(batch_idx):
            augment_on = float(augment_pipe.p) > 0  # One host sync every ada_interval iterations.

        done = cur_nimg >= total_kimg * 1000
        # Tick 0 ends after the first iteration (as StyleGAN2-ADA), so kimg 0 gets a snapshot and metrics too.
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + kimg_per_tick * 1000:
            continue

        # End of tick.
        tick_end_time = time.time()
        sigma = loss.sigma(cur_nimg // 1000)
        training_stats.report('Progress/tick', cur_tick)
        training_stats.report('Progress/kimg', cur_nimg / 1000)
        training_stats.report('Progress/augment', float(augment_pipe.p) if augment_pipe is not None else 0)
        training_stats.report('Progress/sigma', sigma)
        training_stats.report('Timing/sec_per_kimg', (tick_end_time - tick_start_time) / max(cur_nimg - tick_start_nimg, 1) * 1000)
        training_stats.report('Timing/maintenance_sec', maintenance_time)
        if device.type == 'cuda':
            training_stats.report('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(device) / 2 ** 30)
        stats = collector.update()
        if is_main:
            elapsed = tick_end_time - start_time
            print(f'tick {cur_tick:<5d} kimg {cur_nimg / 1000:<8.1f} time {format_time(elapsed):<10s} '
                  f'sec/kimg {collector.mean("Timing/sec_per_kimg"):<7.2f} img/s {(cur_nimg - tick_start_nimg) / max(tick_end_time - tick_start_time, 1e-9):<7.1f} '
                  f'G {collector.mean("Loss/G/loss"):<6.3f} D+ {collector.mean("Loss/scores/real"):<6.3f} '
                  f'bin {collector.mean("Loss/G/loss_bin"):<6.3f} area {collector.mean("Loss/G/mask_area"):<5.3f} ils {collector.mean("Loss/G/anti_leaking"):<7.4f} '
                  f'augment {collector.mean("Progress/augment"):.3f}', flush=True)
            bar.update(cur_nimg / 1000 - bar.n)
            bar.set_postfix_str(f'G {collector.mean("Loss/G/loss"):.2f} p {collector.mean("Progress/augment"):.3f}')
            stats_jsonl.write(json.dumps(dict(stats, timestamp=time.time())) + '\n')
            stats_jsonl.flush()
            if stats_tfevents is not None:
                for name, value in stats.items():
                    stats_tfevents.add_scalar(name, value['mean'], global_step=int(cur_nimg / 1e3), walltime=time.time() - start_time)
                stats_tfevents.flush()

        maintenance_start = time.time()
        if is_main and (done or cur_tick % image_snapshot_ticks == 0):
            _save_image_snapshot(run_dir, f'{cur_nimg // 1000:06d}', G_ema, loss, grid_z, grid_eps,
                                 visualize.grid_shape(training_set.resolution, grid_max_side)[0], device)
        if done or cur_tick % network_snapshot_ticks == 0:
            snap_path = os.path.join(run_dir, snapshot_name(cur_nimg))
            if num_gpus > 1:
                for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
                    misc.check_ddp_consistency(module, name)
                if is_main:
                    print(f'Networks identical on all {num_gpus} ranks at {cur_nimg / 1000:.1f} kimg.')
            if is_main:
                checkpoint.save_snapshot(snap_path, {'G': G, 'D': D, 'G_ema': G_ema, 'augment_pipe': augment_pipe},
                                         training_set_kwargs=training_set_kwargs,
                                         extra={'kimg': cur_nimg // 1000, 'sigma': sigma, 'estimator': estimator_kwargs})
            if snapshot_metrics is not None:
                snapshot_metrics(G_ema, snap_path, sigma)
            # The state comes last: a resumed run restarts after everything this snapshot wrote.
            _save_training_state(os.path.join(run_dir, STATE_FILE), rank, num_gpus, G, D, G_ema, bag, augment_pipe,
                                 ada, G_opt, D_opt, cur_nimg, cur_tick + 1, batch_idx)
        maintenance_time = time.time() - maintenance_start
        cur_tick += 1
        tick_start_nimg = cur_nimg
        tick_start_time = time.time()

    bar.close()
    if is_main:
        stats_jsonl.close()
        if stats_tfevents is not None:
            stats_tfevents.close()
        print(f'Training finished at {cur_nimg / 1000:.1f} kimg in {format_time(time.time() - start_time)}.')
    return cur_nimg


def drop_stats_after(path, cur_nimg):
    """A resumed run replays the ticks after its last snapshot: drop their old lines (and a half-written last one)
    so that stats.jsonl holds each tick once."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            try:
                if json.loads(line)['Progress/kimg']['mean'] <= cur_nimg / 1000 + 1e-9:
                    kept.append(line)
            except (ValueError, KeyError):
                break
    with atomic_write(path, 'w') as f:
        f.writelines(kept)


def _tensorboard_writer(run_dir):
    try:
        import torch.utils.tensorboard as tensorboard
        return tensorboard.SummaryWriter(run_dir)
    except ImportError:
        return None


@torch.no_grad()
def _generate_grid(G, z, eps, device, batch=64):
    out = {'layers': [], 'shifted': []}
    for zb, eb in zip(z.split(batch), eps.split(batch)):
        layers, shifted, _ = G.generate_layer(zb.to(device), None, eb.to(device), noise_mode='const')
        out['layers'].append({k: v.cpu() for k, v in layers.items()})
        out['shifted'].append({k: v.cpu() for k, v in shifted.items()})
    return {key: {k: torch.cat([d[k] for d in dicts]) for k in dicts[0]} for key, dicts in out.items()}


def _save_image_snapshot(run_dir, tag, G_ema, loss, grid_z, grid_eps, gw, device):
    """fakes, masks, layers (un-shifted | shifted) and gradient heat-maps for the fixed grid latents."""
    grids = _generate_grid(G_ema, grid_z, grid_eps, device)
    layers, shifted = grids['layers'], grids['shifted']
    visualize.save_grid(visualize.to_uint8(layers['img']), os.path.join(run_dir, f'fakes{tag}.png'), cols=gw)
    visualize.save_grid(visualize.to_uint8(layers['mask'], (0, 1)), os.path.join(run_dir, f'masks{tag}.png'), cols=gw)
    n = min(16, grid_z.shape[0])
    visualize.save_layer_grid({k: v[:n] for k, v in layers.items()}, {k: v[:n] for k, v in shifted.items()},
                              os.path.join(run_dir, f'layers{tag}.png'))
    if tag != '_init':
        # Heat-maps of the training G's loss gradients (adversarial + mask terms), as the original's grads grid.
        shifted_g, g_img, g_mask = loss.gradient_maps(grid_z[:n].to(device), grid_eps[:n].to(device))
        visualize.save_gradient_grid({k: v.cpu() for k, v in shifted_g.items()}, g_img.cpu(), g_mask.cpu(),
                                     os.path.join(run_dir, f'grads{tag}.png'))


def _save_training_state(path, rank, num_gpus, G, D, G_ema, bag, augment_pipe, ada, G_opt, D_opt, cur_nimg, cur_tick, batch_idx):
    rng = _all_ranks(_rng_state(), num_gpus)
    ada_states = _all_ranks(ada.state_dict() if ada is not None else None, num_gpus)
    if rank != 0:
        return
    state = {
        'G': G.state_dict(), 'D': D.state_dict(), 'G_ema': G_ema.state_dict(),
        'bag': bag.state_dict() if bag is not None else None,
        'augment_pipe': augment_pipe.state_dict() if augment_pipe is not None else None,
        'ada': ada_states, 'G_opt': G_opt.state_dict(), 'D_opt': D_opt.state_dict(), 'rng': rng,
        'cur_nimg': cur_nimg, 'cur_tick': cur_tick, 'batch_idx': batch_idx,
    }
    with atomic_write(path) as f:
        torch.save(state, f)


def _load_training_state(path, rank, G, D, G_ema, bag, augment_pipe, ada, G_opt, D_opt):
    state = torch.load(path, map_location='cpu', weights_only=True)
    G.load_state_dict(state['G'])
    D.load_state_dict(state['D'])
    G_ema.load_state_dict(state['G_ema'])
    if bag is not None:
        bag.load_state_dict(state['bag'])
    if augment_pipe is not None and state['augment_pipe'] is not None:
        augment_pipe.load_state_dict(state['augment_pipe'])
    if ada is not None and state['ada'][rank] is not None:
        ada.load_state_dict(state['ada'][rank])
    G_opt.load_state_dict(state['G_opt'])
    D_opt.load_state_dict(state['D_opt'])
    if rank >= len(state['rng']):
        raise dnnlib.UserError(f'{path} was written by {len(state["rng"])} processes; resume with the same --gpus')
    _set_rng_state(state['rng'][rank])
    return state['cur_nimg'], state['cur_tick'], state['batch_idx']
