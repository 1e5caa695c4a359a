"""Generic helpers: attribute dicts, user-facing errors, log tee, atomic writes, time formatting."""
import contextlib
import functools
import os
import sys
import tempfile


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


class UserError(Exception):
    """Bad input from the user: reported as one line, without a traceback, and a non-zero exit code."""


def cli_errors(main):
    """Decorate a CLI entry point so that UserError ends the process with one clear line and exit code 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f'error: {e}', file=sys.stderr)
            sys.exit(2)
    return wrapper


class Logger:
    """Tee stdout/stderr into a log file. Use as a context manager so that nested loggers never chain."""

    def __init__(self, file_name, mode='a'):
        self.file = open(file_name, mode, encoding='utf-8')
        self.stdout, self.stderr = sys.stdout, sys.stderr

    def write(self, text):
        self.file.write(text)
        self.stdout.write(text)
        self.flush()

    def flush(self):
        self.file.flush()
        self.stdout.flush()

    def isatty(self):
        return False

    def __enter__(self):
        sys.stdout = sys.stderr = self
        return self

    def __exit__(self, *exc):
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.file.close()


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Write to a temporary file beside `path` and rename it into place, so readers never see half a file."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-', suffix=os.path.basename(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the result ordinary permissions.
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def format_time(seconds):
    """Human-readable duration: '12s', '3m 04s', '2h 05m', '1d 03h'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 86400:
        return f'{s // 3600}h {(s // 60) % 60:02d}m'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h'


def next_run_dir(outdir, desc):
    """Return `<outdir>/<NNNNN>-<desc>` with the next free 5-digit id (the StyleGAN2-ADA convention)."""
    ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            head = name.split('-', 1)[0]
            if head.isdigit():
                ids.append(int(head))
    return os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')
