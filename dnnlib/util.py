"""Generic helpers: attribute dicts, user-facing errors, log tee, atomic writes, JSON files, time formatting, and
the test-only fault hook."""
import collections
import contextlib
import errno
import functools
import json
import os
import signal
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


# What the machine, not the program, gets wrong: a full or read-only disk, missing permissions, a failing device.
ENVIRONMENT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def cli_errors(main):
    """Decorate a CLI entry point so that UserError, and an OSError of the environment (ENVIRONMENT_ERRORS), end
    the process with one clear line and exit code 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f'error: {e}', file=sys.stderr)
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRORS:
                raise
            print(f'error: {e.filename or "a file"}: {e.strerror}; free space or fix the permissions, then run the '
                  f'command again (a run resumes where it stopped)', file=sys.stderr)
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


class _WriteErrors:
    """A file that remembers the OSError of a failed write: writers such as torch.save re-raise it as an opaque
    RuntimeError, which would hide a full disk."""

    def __init__(self, file, path):
        self._file, self._path, self.error = file, path, None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as e:
            self.error = OSError(e.errno, e.strerror, self._path)
            raise

    def __getattr__(self, name):
        return getattr(self._file, name)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Write to a temporary file beside `path` and rename it into place, so readers never see half a file. A failed
    write raises the OSError (ENOSPC, EIO, ...) naming `path`, whatever the writer turned it into."""
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix='.tmp-', suffix=os.path.basename(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the result ordinary permissions.
    f = None
    try:
        with os.fdopen(fd, mode) as raw:
            f = _WriteErrors(raw, path)
            yield f
            fault_point(f'write:{os.path.basename(path)}')  # The data is written, the rename still to come.
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if f is not None and f.error is not None and e is not f.error:
            raise f.error from None
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, path) from None
        raise


def read_json(path):
    """The parsed file, or None when it does not exist. A file that does not parse is a UserError naming it."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError as e:
        raise UserError(f'{path} is damaged ({e}); restore it, or delete it to have it recomputed') from None


def write_json(path, obj):
    with atomic_write(path, 'w') as f:
        json.dump(obj, f, indent=2)


def recorded_settings(run_dir):
    """The settings an evaluation run directory was made with (its training_options.json), or None."""
    return read_json(os.path.join(run_dir, 'training_options.json'))


def settings_differ(recorded, settings):
    """'key=recorded (asked: value)' for each of `settings` that `recorded` does not match; keys ending in _digest
    are digests of data, so they read as changed data."""
    recorded = recorded or {}

    def why(k, v):
        if k not in recorded:
            return f'{k} not recorded'
        return f'{k[:-len("_digest")]} data changed since' if k.endswith('_digest') else f'{k}={recorded[k]} (asked: {v})'
    return [why(k, v) for k, v in settings.items() if recorded.get(k) != v]


def read_jsonl(path):
    """The records (JSON objects, one per line) of a log file; [] when it does not exist.

    One policy for every log: a last line without its newline that does not parse was cut short by a kill, and is
    dropped (the writer redoes it on resume). Any other line that is not a JSON object is a UserError naming the file
    and the line. Blank lines hold nothing and are skipped.
    """
    if not os.path.isfile(path):
        return []
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if number == len(lines):
                break
            raise UserError(f'{path}:{number} is not a JSON record ({e}); the file is damaged: repair or delete that '
                            f'line') from None
        if not isinstance(record, dict):
            raise UserError(f'{path}:{number} is not a JSON object; the file is damaged: repair or delete that line')
        records.append(record)
    return records


def _last_line_start(f, end, block=1 << 16):
    """Offset just after the last newline before `end` of the open binary file `f` (0 when there is none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        cut = f.read(pos - start).rfind(b'\n')
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def append_jsonl(path, records):
    """Append records to a log, one line each, flushed. A last line cut short by a kill (see read_jsonl) is removed
    first, so that it can never glue onto the new line; a whole last record that only lacks its newline gets one."""
    with open(path, 'a+b') as f:
        end = f.seek(0, os.SEEK_END)
        if end:
            f.seek(end - 1)
            if f.read(1) != b'\n':
                start = _last_line_start(f, end)
                f.seek(start)
                try:
                    json.loads(f.read())
                    f.write(b'\n')
                except ValueError:
                    f.truncate(start)
        f.write(b''.join(json.dumps(r).encode() + b'\n' for r in records))
        f.flush()


def write_jsonl(path, records):
    """Replace a log by `records`, atomically."""
    with atomic_write(path) as f:
        f.write(b''.join(json.dumps(r).encode() + b'\n' for r in records))


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


_fault_passes = collections.Counter()
_FAULT_ERRORS = {'enospc': errno.ENOSPC, 'eio': errno.EIO}


def fault_point(name):
    """Test-only fault injection, off unless ILSGAN_FAULT is set (never outside tests and benchmarks).

    ILSGAN_FAULT='<action>:<point>[@<n>]' acts at the n-th (default: first) pass of this process through a
    fault_point whose name starts with <point>: 'kill' sends SIGKILL to the process, 'enospc' and 'eio' raise the
    OSError of a full or a failing disk. Points: 'iter' and 'tick' (training), 'data' (a training batch read),
    'write:<file name>' (every atomic_write, with its data written and the rename still to come: snapshots,
    training-state.pt, sample PNGs, checkpoints, results), 'unet' and 'mine' (an iteration of the U-Net, of MINE).
    """
    spec = os.environ.get('ILSGAN_FAULT')
    if not spec:
        return
    action, _, target = spec.partition(':')
    point, _, nth = target.partition('@')
    if action not in ('kill', *_FAULT_ERRORS) or not point:
        raise ValueError(f'ILSGAN_FAULT={spec!r}: expected <kill|enospc|eio>:<point>[@<n>]')
    if not name.startswith(point):
        return
    _fault_passes[point] += 1
    if _fault_passes[point] != int(nth or 1):
        return
    if action == 'kill':
        os.kill(os.getpid(), signal.SIGKILL)
    code = _FAULT_ERRORS[action]
    raise OSError(code, os.strerror(code))
