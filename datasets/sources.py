"""Where training images come from: a list of files under a root folder, or the members of a zip.

A source can say what it contains (a fingerprint for the cache) and decode item i as a PIL RGB image.
"""
import os
import zipfile

from dnnlib.util import UserError

from .imaging import IMAGE_EXTENSIONS, read_rgb


def is_image_name(name):
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


class FileSource:
    """Image files `relpaths` under `root`. `listed_by` names the file that lists them, for error messages;
    `meta_files` are listing files whose changes must also invalidate the cache."""

    def __init__(self, root, relpaths, listed_by, meta_files=()):
        self.root = os.path.abspath(root)
        self.relpaths = list(relpaths)
        self.listed_by = listed_by
        self.meta_files = list(meta_files)

    def __len__(self):
        return len(self.relpaths)

    def path(self, i):
        return os.path.join(self.root, self.relpaths[i])

    def read(self, i):
        return read_rgb(self.path(i), self.path(i))

    def fingerprint(self):
        """[(relpath, size, mtime_ns)] of every file; fails on the first missing one, with a count."""
        entries, missing = [], []
        for rel in self.meta_files + self.relpaths:
            try:
                st = os.stat(os.path.join(self.root, rel))
            except FileNotFoundError:
                missing.append(rel)
                continue
            entries.append((rel, st.st_size, st.st_mtime_ns))
        if missing:
            raise UserError(f'{os.path.join(self.root, missing[0])}: missing ({len(missing)} of the files listed by '
                            f'{self.listed_by} are); run `python -m datasets check` and complete the download')
        return entries


class ZipSource:
    """Images inside a zip (StyleGAN2-ADA dataset_tool format); dataset.json and other members are ignored."""

    def __init__(self, zip_path):
        self.zip_path = os.path.abspath(zip_path)
        self._zip = None
        try:
            with zipfile.ZipFile(self.zip_path) as z:
                self.members = sorted(n for n in z.namelist() if is_image_name(n))
        except (OSError, zipfile.BadZipFile) as e:
            raise UserError(f'{self.zip_path}: cannot read zip ({e}); re-create it with dataset_tool') from None
        if not self.members:
            raise UserError(f'{self.zip_path}: no images in the zip (looked for {", ".join(IMAGE_EXTENSIONS)})')

    def __len__(self):
        return len(self.members)

    def read(self, i):
        if self._zip is None:  # opened lazily, once per process
            self._zip = zipfile.ZipFile(self.zip_path)
        name = f'{self.zip_path}:{self.members[i]}'
        try:
            with self._zip.open(self.members[i]) as f:
                return read_rgb(f, name)
        except zipfile.BadZipFile as e:  # e.g. a CRC mismatch, raised while reading the member
            raise UserError(f'{name}: corrupt zip member ({e}); re-create the zip') from None

    def fingerprint(self):
        st = os.stat(self.zip_path)
        return [(os.path.basename(self.zip_path), st.st_size, st.st_mtime_ns)]

    def __getstate__(self):
        return dict(self.__dict__, _zip=None)


def image_folder(folder):
    """All images below `folder` (recursive), sorted by relative path."""
    folder = os.path.abspath(folder)
    relpaths = sorted(
        os.path.relpath(os.path.join(dirpath, name), folder)
        for dirpath, _dirs, names in os.walk(folder)
        for name in names if is_image_name(name))
    if not relpaths:
        raise UserError(f'{folder}: no images found (searched recursively for {", ".join(IMAGE_EXTENSIONS)})')
    return FileSource(folder, relpaths, listed_by=f'the listing of {folder}')
