"""Scalar statistics gathered during training without host-device syncs in the inner loop.

report(name, value) adds the values' count, sum and sum of squares to device-side accumulators; a Collector reads
and resets them once per tick (summing over ranks under torch.distributed), which is the only sync point.
"""
import torch

_accumulators = {}  # name -> float64 tensor [count, sum, sum of squares] on the reporting device


def report(name, value):
    """Record a scalar or a tensor of values under `name`; returns `value` unchanged."""
    elems = torch.as_tensor(value).detach().flatten().to(torch.float64)
    if elems.numel() == 0:
        return value
    moments = torch.stack([torch.full_like(elems[0], elems.numel()), elems.sum(), elems.square().sum()])
    acc = _accumulators.get(name)
    if acc is None or acc.device != moments.device:
        _accumulators[name] = moments
    else:
        acc.add_(moments)
    return value


class Collector:
    """Turn the accumulated moments into {name: {num, mean, std}} once per tick, and reset them."""

    def __init__(self, device=None):
        self.device = device
        self.results = {}

    def update(self):
        names = sorted(_accumulators)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank must reduce the same names in the same order.
            gathered = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, names)
            names = sorted(set().union(*gathered))
        device = self.device or (next(iter(_accumulators.values())).device if _accumulators else 'cpu')
        stacked = torch.stack([_accumulators[n].to(device) if n in _accumulators else torch.zeros(3, dtype=torch.float64, device=device)
                               for n in names]) if names else torch.zeros([0, 3], dtype=torch.float64)
        if names and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stacked)
        _accumulators.clear()
        self.results = {}
        for name, (count, total, squares) in zip(names, stacked.cpu().tolist()):
            if count > 0:
                mean = total / count
                self.results[name] = {'num': count, 'mean': mean, 'std': max(squares / count - mean ** 2, 0) ** 0.5}
        return self.results

    def mean(self, name, default=float('nan')):
        entry = self.results.get(name)
        return entry['mean'] if entry else default
