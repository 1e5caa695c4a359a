"""Import the original ILSGAN / StyleGAN2-ADA snapshot pickles without running any code from the file.

Those pickles embed Python source (torch_utils.persistence) and would execute it when unpickled normally. Here a
restricted unpickler resolves only a short list of harmless globals (tensor rebuilders, OrderedDict, numpy scalars,
EasyDict); a persistent object becomes inert data (its class name, constructor kwargs and tensors), from which the
network is rebuilt with this project's own classes (training/checkpoint.py). Anything else in the file is refused.
"""
import collections
import io
import pickle

import numpy as np
import torch

import dnnlib
from dnnlib.util import UserError


class _PersistentObject:
    """Inert stand-in for an object the original pickled with its source code."""

    def __init__(self, meta):
        self.meta = meta


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get('type') != 'class' or 'state' not in meta:
        raise pickle.UnpicklingError('malformed persistent object')
    return _PersistentObject(meta)


def _load_tensor_bytes(data):
    # The original pickles store each storage as a nested torch.save blob: read it weights-only as well.
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


def _numpy_scalar(dtype, data):
    return np.frombuffer(data, dtype=dtype)[0]


_ALLOWED = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('torch.storage', '_load_from_bytes'): _load_tensor_bytes,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
    ('dnnlib', 'EasyDict'): dnnlib.EasyDict,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('torch', 'Size'): torch.Size,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f'it references {module}.{name}, which a network snapshot never needs')
        return fn

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('persistent ids are not used by network snapshots')


def _collect_state(obj, prefix, out):
    """Walk a pickled module tree and gather its parameters and persistent buffers under state_dict names."""
    if isinstance(obj, _PersistentObject):
        state = obj.meta['state']
    elif isinstance(obj, dict) and '_modules' in obj:
        state = obj
    else:
        raise pickle.UnpicklingError(f'unexpected object {type(obj).__name__} at {prefix or "the top level"}')
    skip = state.get('_non_persistent_buffers_set', set())
    for key, value in state.get('_parameters', {}).items():
        if value is not None:
            out[prefix + key] = value
    for key, value in state.get('_buffers', {}).items():
        if value is not None and key not in skip:
            out[prefix + key] = value
    for key, child in state.get('_modules', {}).items():
        if child is not None:
            _collect_state(child, f'{prefix}{key}.', out)
    return out


_CLASS_ALIASES = {'Discriminator': 'DiscriminatorOpen'}  # StyleGAN2-ADA's D has the same layout.


def _describe(obj, name):
    """A pickled network as plain data (class name, constructor kwargs, state_dict), the form checkpoint builds."""
    if obj is None:
        return None
    if not isinstance(obj, _PersistentObject):
        raise UserError(f'snapshot entry {name!r} is not a network')
    state = obj.meta['state']
    class_name = obj.meta.get('class_name')
    if state.get('_init_args'):
        raise UserError(f'snapshot entry {name!r} was built with positional arguments; cannot rebuild {class_name}')
    return {
        'class_name': _CLASS_ALIASES.get(class_name, class_name),
        'init_kwargs': dict(state.get('_init_kwargs', {})),
        'state_dict': _collect_state(obj, '', {}),
    }


def read_network_pkl(f):
    """Read an original snapshot pickle from an open binary file; returns a dict with G, D, G_ema, augment_pipe
    (each described as checkpoint.describe_module does, or None) and training_set_kwargs."""
    name = getattr(f, 'name', 'snapshot')
    try:
        data = _RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f'refusing to load {name}: {e}') from None
    if not isinstance(data, dict) or not any(k in data for k in ('G', 'G_ema', 'D')):
        raise UserError(f'{name} is not a network snapshot (expected a dict with G, D, G_ema)')
    out = {key: _describe(data.get(key), key) for key in ('G', 'D', 'G_ema', 'augment_pipe')}
    out['training_set_kwargs'] = dnnlib.EasyDict(data.get('training_set_kwargs') or {})
    return out
