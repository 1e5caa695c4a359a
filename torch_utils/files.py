"""Reading torch files whole or not at all: torch.load does not check the CRCs that torch.save writes, so a file
damaged on disk would load with wrong tensors and no error."""
import contextlib
import pickle
import zipfile

import torch

from dnnlib.util import UserError


def check(path, what='file'):
    """Check every CRC of the torch file at `path`. A missing, cut short, damaged or foreign file is a UserError
    naming it; `what` says what it should be (for the message)."""
    with _named_errors(path, what):
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    if bad is not None:
        raise UserError(f'{path} is damaged (its {bad} fails its checksum); restore the {what} or use another one')


def load(path, what='file'):
    """torch.load(path, weights_only=True) on the CPU, after check(path, what)."""
    check(path, what)
    with _named_errors(path, what):
        return torch.load(path, map_location='cpu', weights_only=True)


@contextlib.contextmanager
def _named_errors(path, what):
    """Turn the errors of reading a bad torch file into one UserError line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f'{path} does not exist; pass an existing {what}') from None
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise UserError(f'{path} is not a readable {what} ({" ".join(str(e).split())[:120]}); was it cut short? '
                        f'Restore it or use another one') from None
