"""Ordered map over range(n) with a small fork pool: decoding JPEG/PNG is CPU-bound and embarrassingly parallel."""
import multiprocessing
import os

MIN_ITEMS_FOR_POOL = 256  # below this, starting processes costs more than it saves
MAX_WORKERS = 8

_work = None  # the function the forked workers call; fork copies it, so it needn't be picklable


def _call(i):
    return _work(i)


def default_workers(n):
    if n < MIN_ITEMS_FOR_POOL or 'fork' not in multiprocessing.get_all_start_methods():
        return 1
    if multiprocessing.current_process().daemon:  # e.g. a DataLoader worker: daemons may not have children
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def ordered_map(fn, n, workers=None):
    """Yield fn(0), ..., fn(n - 1) in order, using `workers` forked processes (default: by size and CPU count)."""
    global _work
    workers = default_workers(n) if workers is None else workers
    if workers <= 1:
        yield from map(fn, range(n))
        return
    _work = fn
    try:
        with multiprocessing.get_context('fork').Pool(workers) as pool:
            yield from pool.imap(_call, range(n), chunksize=8)
    finally:
        _work = None
