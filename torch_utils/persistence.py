"""Record a module's constructor arguments so that a snapshot can rebuild it from plain data.

Our snapshots store (class name, constructor kwargs, state_dict) and never pickled code; the original's pickles
carried the same `_init_args` / `_init_kwargs` attributes, which is what lets legacy.py import them.
"""
import copy
import functools


def persistent_class(cls):
    """Class decorator: keep deep copies of the constructor arguments as `_init_args` / `_init_kwargs`."""
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._init_args = copy.deepcopy(args)
        self._init_kwargs = copy.deepcopy(kwargs)

    cls.__init__ = __init__
    return cls
