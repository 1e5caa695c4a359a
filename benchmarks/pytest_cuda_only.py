"""pytest plugin: keep only the CUDA-only tests, i.e. those that a machine without a GPU skips for needing one.

    python -m pytest -p benchmarks.pytest_cuda_only tests

A test is CUDA-only when it carries the `cuda` marker, or a skipif whose reason names a CUDA GPU (tests/conftest.py's
`cuda`, test_cuda_ops.py's `needs_gpu`: reason 'needs a CUDA GPU'). Tests that run only *without* CUDA say so
differently and are left out.
"""


def needs_cuda(item):
    if item.get_closest_marker('cuda') is not None:
        return True
    return any('CUDA GPU' in str(m.kwargs.get('reason', '')) for m in item.iter_markers('skipif'))


def pytest_collection_modifyitems(config, items):
    kept = [item for item in items if needs_cuda(item)]
    dropped = [item for item in items if not needs_cuda(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
