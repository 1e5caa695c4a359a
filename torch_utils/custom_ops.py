"""Build-on-demand loader for the optional C++/CUDA plugins of torch_utils/ops.

get_plugin() compiles a set of sources with torch.utils.cpp_extension.load (ninja) into a cache directory
keyed by a hash of the sources, the torch/CUDA versions and the build options, so an edited source gets a fresh
build while an unchanged one is reused across processes. Any failure -- no CUDA, no compiler, no ninja, a compile
error, a load error -- produces exactly one warning

    Falling back to the pure-PyTorch implementation of <op>: <reason>

and get_plugin() returns None for that plugin from then on (the failure is remembered, not retried).

Environment:
    ILSGAN_NO_CUDA_OPS=1        disable all plugins (get_plugin returns None without building or warning)
    ILSGAN_CUDA_OPS_VERBOSE=1   show the compiler output while building, and the full log on failure
    ILSGAN_CUDA_OPS_CACHE=DIR   build cache root (default: $TORCH_EXTENSIONS_DIR/ilsgan or
                                ~/.cache/torch_extensions/ilsgan)
"""
import hashlib
import os
import re
import sys
import threading
import uuid
import warnings

import torch

__all__ = ['get_plugin', 'plugins_disabled']

_lock = threading.RLock()
_cache = {}  # (module_name, sources) -> loaded plugin, or None after a failure


def plugins_disabled():
    """True when ILSGAN_NO_CUDA_OPS asks for the pure-PyTorch implementations everywhere."""
    return os.environ.get('ILSGAN_NO_CUDA_OPS', '').strip().lower() not in ('', '0', 'false', 'no', 'off')


def _verbose():
    return os.environ.get('ILSGAN_CUDA_OPS_VERBOSE', '').strip().lower() not in ('', '0', 'false', 'no', 'off')


def _cache_root():
    root = os.environ.get('ILSGAN_CUDA_OPS_CACHE')
    if root:
        return root
    base = os.environ.get('TORCH_EXTENSIONS_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'torch_extensions')
    return os.path.join(base, 'ilsgan')


def _op_name(module_name):
    return re.sub(r'_(plugin|kernel)$', '', module_name)


def _cuda_arch_key():
    """The GPU architectures a build targets (part of the cache key: a binary built for one GPU may lack another's)."""
    arch = os.environ.get('TORCH_CUDA_ARCH_LIST')
    if arch:
        return arch
    try:
        if torch.cuda.is_available():
            return ','.join(sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                                    for i in range(torch.cuda.device_count())}))
    except Exception:  # pragma: no cover - broken driver; the build will say more
        pass
    return 'none'


def _digest(files, build_kwargs, with_cuda):
    h = hashlib.sha256()
    for path in files:
        h.update(os.path.basename(path).encode() + b'\0')
        with open(path, 'rb') as fh:
            h.update(fh.read())
        h.update(b'\0')
    h.update(repr(sorted((k, repr(v)) for k, v in build_kwargs.items())).encode())
    h.update(f'torch={torch.__version__};cuda={torch.version.cuda};python={sys.version_info[:2]}'.encode())
    if with_cuda:
        from torch.utils import cpp_extension
        h.update(f';cuda_home={cpp_extension.CUDA_HOME};arch={_cuda_arch_key()}'.encode())
    return h.hexdigest()[:20]


def _copy_if_changed(src, dst):
    """Copy src to dst atomically unless dst already has the same bytes (several processes may race here)."""
    with open(src, 'rb') as fh:
        data = fh.read()
    if os.path.isfile(dst):
        with open(dst, 'rb') as fh:
            if fh.read() == data:
                return
    tmp = f'{dst}.tmp-{uuid.uuid4().hex}'
    with open(tmp, 'wb') as fh:
        fh.write(data)
    os.replace(tmp, dst)


def _summarize(exc):
    """One line describing a build/load failure: the error's headline plus the first compiler error, if any."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = lines[0] if lines else type(exc).__name__
    m = re.match(r"(Error building extension '[^']*')", head)
    if m:  # the rest of that line is the compiler command
        head = m.group(1)
    first_error = next((ln for ln in lines[1:] if re.search(r'\berror\b', ln, re.IGNORECASE)
                        and not ln.startswith(('FAILED', 'ninja: build stopped'))), None)
    summary = head + (f': {first_error}' if first_error else '')
    summary = re.sub(r'\s+', ' ', summary)
    if len(summary) > 400:
        summary = summary[:397] + '...'
    if not _verbose() and len(lines) > 1:
        summary += ' (ILSGAN_CUDA_OPS_VERBOSE=1 shows the full log)'
    return summary


def _build(module_name, sources, headers, build_kwargs):
    from torch.utils import cpp_extension

    files = list(sources) + list(headers)
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'source file not found: {path}')
    with_cuda = build_kwargs.get('with_cuda')
    if with_cuda is None:
        with_cuda = any(os.path.splitext(s)[1] in ('.cu', '.cuh') for s in sources)
    if with_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError('CUDA is not available')
        if cpp_extension.CUDA_HOME is None:
            raise RuntimeError('the CUDA toolkit (nvcc) was not found; set CUDA_HOME')
        inc_dirs = [os.path.join(cpp_extension.CUDA_HOME, 'include'), os.environ.get('CUDA_INC_PATH') or '',
                    '/usr/include']
        if not any(os.path.isfile(os.path.join(d, 'cuda_runtime_api.h')) for d in inc_dirs if d):
            raise RuntimeError(f'no CUDA headers (cuda_runtime_api.h) under CUDA_HOME={cpp_extension.CUDA_HOME}; '
                               'set CUDA_HOME to the toolkit root')
    if not cpp_extension.is_ninja_available():
        raise RuntimeError('ninja is not installed (pip install ninja)')

    build_dir = os.path.join(_cache_root(), f'{module_name}-{_digest(files, build_kwargs, with_cuda)}')
    os.makedirs(build_dir, exist_ok=True)
    # Build from a private copy: the hash then describes exactly what gets compiled, and quoted includes of the
    # headers resolve next to the sources.
    copied = []
    for path in files:
        dst = os.path.join(build_dir, os.path.basename(path))
        _copy_if_changed(path, dst)
        copied.append(dst)
    copied_sources = copied[:len(sources)]

    kwargs = dict(build_kwargs)
    kwargs.setdefault('verbose', _verbose())
    return cpp_extension.load(name=module_name, sources=copied_sources, build_directory=build_dir, **kwargs)


def get_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs):
    """Compile and load a C++/CUDA extension, or return None (with one warning) if that is not possible.

    module_name: extension name (also the build directory's prefix); '<op>_plugin' names the op '<op>' in the
        warning. sources / headers: file names, relative to source_dir when given. Headers are not compiled but are
        hashed and copied next to the sources. build_kwargs go to torch.utils.cpp_extension.load (e.g.
        extra_cuda_cflags, is_python_module=False). Returns whatever load returns (a module, or the library path
        for is_python_module=False), or None.
    """
    if plugins_disabled():
        return None
    headers = list(headers or [])
    if source_dir is not None:
        sources = [os.path.join(source_dir, s) for s in sources]
        headers = [os.path.join(source_dir, h) for h in headers]
    sources = [os.path.abspath(s) for s in sources]
    headers = [os.path.abspath(h) for h in headers]
    key = (module_name, tuple(sources), tuple(headers))
    with _lock:
        if key in _cache:
            return _cache[key]
        try:
            plugin = _build(module_name, sources, headers, build_kwargs)
        except Exception as exc:
            if _verbose():
                print(f'Building {module_name} failed:\n{exc}', file=sys.stderr)
            warnings.warn(f'Falling back to the pure-PyTorch implementation of {_op_name(module_name)}: '
                          f'{_summarize(exc)}', RuntimeWarning, stacklevel=2)
            plugin = None
        _cache[key] = plugin
        return plugin
