"""Tensor and module helpers shared by the networks, the training loop and the evaluators."""
import contextlib
import itertools

import numpy as np
import torch

_constant_cache = {}


def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """A cached constant tensor: avoids re-creating filters and matrices on every forward pass."""
    value = np.asarray(value)
    shape = None if shape is None else tuple(shape)
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device or 'cpu')
    memory_format = memory_format or torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    if key not in _constant_cache:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        tensor = tensor if shape is None else tensor.broadcast_to(shape)
        _constant_cache[key] = tensor.contiguous(memory_format=memory_format)
    return _constant_cache[key]


def assert_shape(tensor, ref_shape):
    """Check a tensor's shape against a reference in which None matches any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}')
    for idx, (size, ref) in enumerate(zip(tensor.shape, ref_shape)):
        if ref is None:
            continue
        if isinstance(ref, torch.Tensor):
            torch._assert(torch.as_tensor(size) == ref, f'Wrong size for dimension {idx}')
        elif isinstance(size, torch.Tensor):
            torch._assert(size == torch.as_tensor(ref), f'Wrong size for dimension {idx}: expected {ref}')
        elif size != ref:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref}')


class InfiniteSampler(torch.utils.data.Sampler):
    """An endless, seeded stream of dataset indices, split between `num_replicas` ranks.

    The indices are a random permutation that is walked round and round. After each position is visited it swaps
    places with a random one of the `window_size * len(dataset)` positions just behind it (cyclically), so every
    lap visits the items in a slightly different order. All ranks walk (and swap) the same sequence; rank r yields
    steps r, r + num_replicas, ... of it. Without shuffling the walk is 0, 1, 2, ... with no swaps. The order
    depends only on the seed and the dataset length: exact resume counts on it (tests/test_misc.py pins it).
    """

    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5):
        if len(dataset) == 0 or num_replicas < 1 or not 0 <= rank < num_replicas or not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: bad arguments (len {len(dataset)}, rank {rank} of {num_replicas}, '
                             f'window {window_size})')
        super().__init__()
        self.dataset, self.seed, self.shuffle = dataset, seed, shuffle
        self.rank, self.num_replicas, self.window_size = rank, num_replicas, window_size

    def __iter__(self):
        walk = np.arange(len(self.dataset))
        rng = np.random.RandomState(self.seed) if self.shuffle else None
        look_back = 0
        if rng is not None:
            rng.shuffle(walk)
            look_back = int(np.rint(walk.size * self.window_size))
        for step in itertools.count():
            pos = step % walk.size
            if step % self.num_replicas == self.rank:
                yield walk[pos]
            if look_back >= 2:  # a window of 1 could only swap a position with itself
                behind = (pos - rng.randint(look_back)) % walk.size
                walk[[pos, behind]] = walk[[behind, pos]]


def params_and_buffers(module):
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module):
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy every tensor that exists under the same name in both modules (used by EMA init and resume)."""
    src = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name in src:
            tensor.copy_(src[name].detach()).requires_grad_(tensor.requires_grad)
        elif require_all:
            raise KeyError(f'{name} is missing from the source module')


def nan_to_num_(grads):
    """Sanitise gradients in place: NaN -> 0, +-Inf -> +-1e5 (as the original does after every phase)."""
    for g in grads:
        if g is not None:
            torch.nan_to_num_(g, nan=0, posinf=1e5, neginf=-1e5)


def check_ddp_consistency(module, name='module'):
    """Raise if any parameter or buffer differs between ranks (a cheap checksum per tensor, all-gathered).

    The mapping networks' w_avg is skipped: each rank tracks it from its own samples, as in StyleGAN2-ADA.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    tensors = [t for n, t in named_params_and_buffers(module) if not n.endswith('w_avg')]
    sums = torch.stack([t.detach().double().sum() for t in tensors])
    gathered = [torch.empty_like(sums) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(gathered, sums)
    for rank, other in enumerate(gathered):
        if not torch.equal(other, gathered[0]):
            raise RuntimeError(f'{name} differs between rank 0 and rank {rank}: DDP replicas diverged')


def broadcast_from_rank0(modules):
    """Make every rank start from rank 0's parameters and buffers."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for module in modules:
        if module is not None:
            for tensor in params_and_buffers(module):
                torch.distributed.broadcast(tensor.data, src=0)
