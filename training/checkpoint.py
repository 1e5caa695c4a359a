"""Snapshots that load without running code from the file.

A snapshot is a torch.save'd dict of plain data: for each network its class name, constructor kwargs and
state_dict. `load_snapshot` reads it with torch.load(weights_only=True), its checksums checked, and rebuilds the
modules from this project's own classes. The original's pickles are accepted too: training/legacy.py reads them as
the same plain data, and `load_network_pkl` builds their networks.
"""
import copy

import torch

import dnnlib
from dnnlib.util import UserError
from torch_utils import files
from training import augment, legacy, networks

FORMAT = 'ilsgan-snapshot-v1'
NETWORK_KEYS = ('G', 'D', 'G_ema', 'augment_pipe')


def network_classes():
    """Classes a snapshot may name; nothing else is ever constructed."""
    return {
        'PerturbGenerator': networks.PerturbGenerator,
        'DiscriminatorOpen': networks.DiscriminatorOpen,
        'AugmentPipe': augment.AugmentPipe,
    }


def describe_module(module, dtype=None):
    """Plain-data description of a module built by a @persistent_class: enough to rebuild it. With `dtype`, the
    floating-point tensors are stored in that type (loading casts them back to the module's own)."""
    if module is None:
        return None
    assert not module._init_args, 'persistent modules must be built with keyword arguments'

    def stored(v):
        v = v.detach().cpu()
        return v.to(dtype) if dtype is not None and v.is_floating_point() else v.clone()

    return {
        'class_name': type(module).__name__,
        'init_kwargs': copy.deepcopy(module._init_kwargs),
        'state_dict': {k: stored(v) for k, v in module.state_dict().items()},
    }


def build_module(desc, name='network'):
    """Inverse of describe_module."""
    if desc is None:
        return None
    classes = network_classes()
    cls = classes.get(desc['class_name'])
    if cls is None:
        raise UserError(f'{name}: unknown network class {desc["class_name"]!r} (known: {", ".join(classes)})')
    module = cls(**desc['init_kwargs'])
    module.load_state_dict(desc['state_dict'], strict=True)
    return module.eval().requires_grad_(False)


def save_snapshot(path, networks, training_set_kwargs=None, extra=None, dtype=None):
    """Write networks (a dict of modules, None allowed) atomically to `path`; `dtype` as in describe_module."""
    data = {'format': FORMAT, 'training_set_kwargs': dict(training_set_kwargs or {}), 'extra': dict(extra or {})}
    for key, module in networks.items():
        data[key] = describe_module(module, dtype)
    with dnnlib.util.atomic_write(path) as f:
        torch.save(data, f)


def load_snapshot(path):
    """Load one of our snapshots or an original ILSGAN/StyleGAN2-ADA pickle; returns a dict with G, D, G_ema,
    augment_pipe (modules in eval mode on the CPU, or None) and training_set_kwargs."""
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as e:
        raise UserError(f'cannot read snapshot {path}: {e.strerror}') from None
    if head[:2] != b'PK':
        with open(path, 'rb') as f:
            return load_network_pkl(f)
    data = files.load(path, 'snapshot')
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise UserError(f'{path} is a torch file but not an ILSGAN snapshot (no format tag {FORMAT!r})')
    out = {key: build_module(data.get(key), name=f'{path}:{key}') for key in NETWORK_KEYS}
    out['training_set_kwargs'] = dnnlib.EasyDict(data.get('training_set_kwargs', {}))
    out['extra'] = data.get('extra', {})
    return out


def load_network_pkl(f):
    """Read an original snapshot pickle from an open binary file; returns a dict with G, D, G_ema, augment_pipe
    (this project's modules, eval mode, CPU) and training_set_kwargs."""
    data = legacy.read_network_pkl(f)
    out = {'training_set_kwargs': data['training_set_kwargs']}
    for key in NETWORK_KEYS:
        try:
            out[key] = build_module(data[key], name=key)
        except RuntimeError as e:
            class_name = data[key]['class_name']
            raise UserError(f'snapshot entry {key!r} ({class_name}) does not match this code: '
                            f'{str(e).splitlines()[0]}') from None
    return out


def _names(names, limit=3):
    """'a, b, c and 4 more' for error lines."""
    names = list(names)
    more = f' and {len(names) - limit} more' if len(names) > limit else ''
    return ', '.join(names[:limit]) + more


def check_weights_fit(snapshot, modules, path, partial=False):
    """What --resume=<weights> copies: (plan, unfit, unused). plan maps each key of `modules` to the names of the
    tensors the snapshot provides for it; unfit lists the tensors of `modules` it does not provide (absent, or of
    another shape) and unused the snapshot's tensors whose names `modules` lacks.

    Each network of the snapshot must be for the resolution of its twin in `modules`, and, unless `partial`, every
    parameter and buffer of `modules` must come from the snapshot (same name, same shape) and every tensor of the
    snapshot must have a place: else a UserError names what does not fit.
    """
    plan, missing, reshaped, shapes, unused = {}, [], [], [], []
    for key, module in modules.items():
        source = snapshot.get(key)
        wanted = module.state_dict()
        if source is None:
            plan[key] = set()
            missing += [f'{key}.{name}' for name in wanted]
            continue
        trained, res = getattr(source, 'img_resolution', None), getattr(module, 'img_resolution', None)
        if trained != res:
            raise UserError(f'{path}: its {key} is for {trained} px images, this run trains at {res} px; '
                            f'resume with --resolution={trained} or from a snapshot of this resolution')
        given = source.state_dict()
        plan[key] = {name for name, t in wanted.items() if name in given and given[name].shape == t.shape}
        missing += [f'{key}.{name}' for name in wanted if name not in given]
        reshaped += [f'{key}.{name}' for name in wanted if name in given and name not in plan[key]]
        shapes += [f'{list(given[name].shape)} there, {list(t.shape)} here' for name, t in wanted.items()
                   if name in given and name not in plan[key]]
        unused += [f'{key}.{name}' for name in given if name not in wanted]
    problems = []
    if missing:
        problems.append(f'{len(missing)} tensors of this configuration are not in it: {_names(missing)}')
    if reshaped:
        problems.append(f'{len(reshaped)} have another shape: {_names(reshaped)} (the first is {shapes[0]})')
    if unused:
        problems.append(f'{len(unused)} of its tensors have no place here: {_names(unused)}')
    if problems and not partial:
        raise UserError(f'{path} does not fit this configuration ({"; ".join(problems)}); resume with the '
                        f'resolution, --cfg and --map it was trained with, or pass --resume-partial to start the '
                        f'rest from random')
    return plan, missing + reshaped, unused


def copy_weights(snapshot, modules, plan):
    """Copy the tensors named by `plan` (from check_weights_fit) from the snapshot's networks into `modules`."""
    for key, module in modules.items():
        if plan[key]:
            given = snapshot[key].state_dict()
            module.load_state_dict({name: given[name] for name in plan[key]}, strict=False)
