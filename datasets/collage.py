"""The built-in `collage` dataset: a shape cut out of one photograph, pasted over a crop of another, with its mask.

Where `synthetic` paints procedural textures, `collage` uses photographs, so both layers carry natural image
statistics and no colour or texture rule separates them:
- The photographs are the sample images that ship inside the scikit-image wheel (PHOTOS lists each one with the
  terms scikit-image states for it: public domain or CC0, or no known copyright restriction). Grey ones are tinted
  with two random colours.
- The object is a superlevel set of a random smooth field inside an elliptical envelope: shapes range from ovals to
  lobed, dented blobs, cover 15-45 % of the image, and sit near the centre (as in CUB's framing). Its largest
  connected part is kept. Edges are sharp or soft; the mask is the object's coverage > 0.5.
- The object is a crop of one photograph (scaled, rotated, mirrored, colour-jittered, shaded across its width); the
  background a crop of another, often defocused, with a soft shadow of the object on it. In most images the object's
  colour statistics are moved towards the background's, so that no colour threshold separates the two.
- Geometry and crops live in normalised coordinates and are rendered on a fixed 256 x 256 grid, then box-filtered
  to the output size, so the masks at 32, 64 and 128 px outline the same objects.
- Image i of a split comes from its own seed [seed, split, i], as in `synthetic`.
"""
import importlib.util
import os

import numpy as np
import PIL.Image
import scipy.ndimage
import torch
import torch.nn.functional as F

from dnnlib.util import UserError

from .parallel import default_workers, ordered_map
from .synthetic import SPLITS  # the same split seeds as `synthetic`
VERSION = 1  # part of the cache key: bump when the images change

# File in skimage/data -> terms as scikit-image's documentation states them.
PHOTOS = {
    'astronaut.png': 'public domain (NASA)',
    'chelsea.png': 'CC0 (Stefan van der Walt)',
    'coffee.png': 'CC0 (Rachel Michetti)',
    'rocket.jpg': 'public domain (SpaceX)',
    'hubble_deep_field.jpg': 'public domain (NASA)',
    'retina.jpg': 'CC0 1.0',
    'ihc.png': 'no known copyright restrictions',
    'camera.png': 'CC0 (Lav Varshney)',
    'brick.png': 'CC0 (CC0Textures)',
    'grass.png': 'CC0',
    'gravel.png': 'CC0 (CC0Textures)',
    'coins.png': 'no known copyright restrictions (Brooklyn Museum)',
    'cell.png': 'CC0',
}

CANVAS = 256               # side of the rendering grid; outputs are box-filtered from it
AREA_RANGE = (0.15, 0.45)  # object area as a fraction of the image
CENTRE_JITTER = 0.08       # std of the object centre around the image centre
HARMONICS = 6              # random plane waves that dent and bulge the envelope
MAX_SIDE = 1024            # photographs are downsized to at most this side once, when loaded


# ------------------------------------------------------------------------------------------------------------------
# Photographs.

_photos = None


def photo_dir():
    spec = importlib.util.find_spec('skimage')
    if spec is None or not spec.submodule_search_locations:
        raise UserError('the collage dataset needs the photographs of scikit-image: pip install scikit-image')
    return os.path.join(list(spec.submodule_search_locations)[0], 'data')


def photos():
    """[(float tensor [C, H, W] in [0, 1], is_grey)] for PHOTOS, loaded once per process."""
    global _photos
    if _photos is None:
        loaded = []
        for name in PHOTOS:
            path = os.path.join(photo_dir(), name)
            if not os.path.isfile(path):
                raise UserError(f'{path}: missing from the scikit-image install; reinstall scikit-image')
            image = PIL.Image.open(path)
            grey = image.mode in ('L', 'I', 'I;16', 'F')
            image = image.convert('L' if grey else 'RGB')
            image.thumbnail((MAX_SIDE, MAX_SIDE), PIL.Image.LANCZOS)
            array = np.asarray(image, dtype=np.float32) / 255
            array = array[None] if grey else array.transpose(2, 0, 1)
            loaded.append((torch.from_numpy(np.ascontiguousarray(array)), grey))
        _photos = loaded
    return _photos


# ------------------------------------------------------------------------------------------------------------------
# Scene parameters (per image, small, resolution-independent).

def _crop(rng, scale_range):
    return dict(photo=int(rng.integers(len(PHOTOS))), scale=rng.uniform(*scale_range), angle=rng.uniform(-0.5, 0.5),
                x=rng.uniform(0.15, 0.85), y=rng.uniform(0.15, 0.85), flip=bool(rng.random() < 0.5),
                gains=np.exp(rng.normal(0, 0.08, 3)), brightness=rng.uniform(0.75, 1.15),
                contrast=rng.uniform(0.7, 1.3), saturation=rng.uniform(0.5, 1.3),
                tint=(rng.random(3), rng.random(3)))


def _scene(rng):
    fg = _crop(rng, (0.2, 0.6))
    bg = _crop(rng, (0.3, 0.9))
    while bg['photo'] == fg['photo']:
        bg['photo'] = int(rng.integers(len(PHOTOS)))
    return dict(
        fg=fg, bg=bg,
        area=rng.uniform(*AREA_RANGE), cx=0.5 + rng.normal(0, CENTRE_JITTER), cy=0.5 + rng.normal(0, CENTRE_JITTER),
        aspect=np.exp(rng.uniform(-0.5, 0.5)), axis=rng.uniform(0, np.pi),
        waves=rng.normal(0, 1, (HARMONICS, 2)) * rng.uniform(1.0, 3.0, (HARMONICS, 1)),
        phases=rng.uniform(0, 2 * np.pi, HARMONICS), wobble=rng.uniform(0.1, 0.6),
        edge=rng.uniform(0.004, 0.015) * (rng.random() < 0.5), defocus=rng.uniform(0.003, 0.012) * (rng.random() < 0.6),
        harmonise=rng.uniform(0.5, 1.0) * (rng.random() < 0.6),
        shading=rng.uniform(0, 0.5), light=rng.uniform(0, 2 * np.pi),
        shadow=rng.uniform(0.2, 0.5) * (rng.random() < 0.5), shadow_offset=rng.normal(0, 0.03, 2),
        noise=rng.uniform(0.004, 0.02))


# ------------------------------------------------------------------------------------------------------------------
# Rendering on the CANVAS grid.

def _canvas_coords():
    c = (torch.arange(CANVAS, dtype=torch.float32) + 0.5) / CANVAS
    return c[None, :].expand(CANVAS, CANVAS), c[:, None].expand(CANVAS, CANVAS)  # u (x), v (y)


def _shape_field(s, u, v):
    """Larger inside: 1 - (elliptical radius)^2 plus a sum of plane waves, relative to the object's centre."""
    du, dv = u - s['cx'], v - s['cy']
    ca, sa = np.cos(s['axis']), np.sin(s['axis'])
    a, b = du * ca + dv * sa, dv * ca - du * sa
    radius = np.sqrt(s['area'] / np.pi)
    rho2 = ((a * np.sqrt(s['aspect'])) ** 2 + (b / np.sqrt(s['aspect'])) ** 2) / radius ** 2
    waves = torch.from_numpy(s['waves'].astype(np.float32))
    phase = 2 * np.pi * (du[..., None] * waves[:, 0] + dv[..., None] * waves[:, 1]) + torch.from_numpy(s['phases'].astype(np.float32))
    return 1 - rho2 + s['wobble'] * torch.cos(phase).mean(-1) * 2


def _object_coverage(s, u, v):
    """Hard object mask on the canvas (float 0/1) of area s['area'], its largest connected part."""
    field = _shape_field(s, u, v)
    threshold = torch.quantile(field.flatten(), 1 - s['area'])
    inside = (field > threshold).numpy()
    labels, count = scipy.ndimage.label(inside)
    if count > 1:
        sizes = np.bincount(labels.ravel())[1:]
        inside = labels == 1 + int(np.argmax(sizes))
    return torch.from_numpy(inside.astype(np.float32))


def _gaussian_blur(x, sigma):
    """Blur [C, H, W] on the canvas with a std of `sigma` (fraction of the image side); reflect at the borders."""
    if sigma <= 0:
        return x
    sigma_px = sigma * CANVAS
    radius = int(np.ceil(3 * sigma_px))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / sigma_px) ** 2)
    taps = (taps / taps.sum()).to(x.dtype)
    c = x.shape[0]
    y = F.pad(x[None], [radius, radius, radius, radius], mode='reflect')
    y = F.conv2d(y, taps.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, taps.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def _photo_crop(p):
    """The crop of photograph p['photo'] seen through the canvas: [3, CANVAS, CANVAS] in [0, 1], colour-jittered."""
    image, grey = photos()[p['photo']]
    _, h, w = image.shape
    side = p['scale'] * min(h, w)  # the canvas spans this many source pixels
    ca, sa = np.cos(p['angle']), np.sin(p['angle'])
    flip = -1.0 if p['flip'] else 1.0
    # Source pixel = centre + R(angle) @ diag(flip, 1) @ (canvas offset * side), then normalised for grid_sample.
    c = (torch.arange(CANVAS, dtype=torch.float32) + 0.5) / CANVAS - 0.5
    gu, gv = c[None, :] * side * flip, c[:, None] * side
    cx = p['x'] * (w - side) + side / 2 if w > side else w / 2
    cy = p['y'] * (h - side) + side / 2 if h > side else h / 2
    sx, sy = cx + gu * ca - gv * sa, cy + gu * sa + gv * ca
    grid = torch.stack([sx / w * 2 - 1, sy / h * 2 - 1], dim=-1)[None]
    crop = F.grid_sample(image[None], grid, mode='bilinear', padding_mode='reflection', align_corners=False)[0]
    if grey:
        dark, light = (torch.from_numpy(t.astype(np.float32))[:, None, None] for t in p['tint'])
        crop = dark * 0.6 + (light * 0.6 + 0.4 - dark * 0.6) * crop
    grey_level = crop.mean(0, keepdim=True)
    crop = grey_level + (crop - grey_level) * p['saturation']
    crop = (crop - 0.5) * p['contrast'] + 0.5
    crop = crop * p['brightness'] * torch.from_numpy(p['gains'].astype(np.float32))[:, None, None]
    return crop.clamp(0, 1)


def _render_canvas(s):
    """The layers of one scene on the canvas: foreground [3, C, C], background [3, C, C], coverage [C, C]."""
    u, v = _canvas_coords()
    hard = _object_coverage(s, u, v)
    alpha = _gaussian_blur(hard[None], s['edge'])[0]

    bg = _gaussian_blur(_photo_crop(s['bg']), s['defocus'])
    if s['shadow'] > 0:
        dx, dy = (int(round(o * CANVAS)) for o in s['shadow_offset'])
        shadow = _gaussian_blur(torch.roll(hard, shifts=(dy, dx), dims=(0, 1))[None], 0.03)[0]
        bg = bg * (1 - s['shadow'] * shadow)

    fg = _photo_crop(s['fg'])
    if s['harmonise'] > 0:
        # Move the object's colour statistics towards the background's, so colour alone rarely separates them.
        fm, fs = fg.mean(dim=(1, 2), keepdim=True), fg.std(dim=(1, 2), keepdim=True) + 1e-3
        bm, bs = bg.mean(dim=(1, 2), keepdim=True), bg.std(dim=(1, 2), keepdim=True) + 1e-3
        matched = (fg - fm) / fs * bs + bm
        fg = (fg + s['harmonise'] * (matched - fg)).clamp(0, 1)
    across = ((u - s['cx']) * np.cos(s['light']) + (v - s['cy']) * np.sin(s['light'])) / np.sqrt(s['area'])
    fg = fg * (1 - s['shading'] * across.clamp(-1, 1) / 2)
    return fg, bg, alpha


def render_scene(resolution, seed, split, i):
    """Image i of a split with its layers, at `resolution`: dict of float arrays image, fg, bg [3, R, R] in [0, 1]
    (the image with sensor noise, the layers without), coverage alpha [R, R], and the mask uint8 [R, R]."""
    rng = np.random.default_rng([seed, SPLITS[split], i])
    s = _scene(rng)
    fg, bg, alpha = _render_canvas(s)
    factor = CANVAS // resolution
    # Composite on the canvas, then box-filter: the antialiased edge of an image seen through a lens.
    image = F.avg_pool2d((alpha * fg + (1 - alpha) * bg)[None], factor)[0].numpy()
    image = image + s['noise'] * rng.standard_normal(image.shape, dtype=np.float32)
    coverage = F.avg_pool2d(alpha[None, None], factor)[0, 0].numpy()
    return dict(image=np.clip(image, 0, 1), fg=F.avg_pool2d(fg[None], factor)[0].numpy(),
                bg=F.avg_pool2d(bg[None], factor)[0].numpy(), alpha=coverage, mask=(coverage > 0.5).astype(np.uint8))


def _render_one(resolution, seed, split, i):
    scene = render_scene(resolution, seed, split, i)
    return (scene['image'] * 255 + 0.5).astype(np.uint8), scene['mask']


def _check(resolution, split):
    if split not in SPLITS:
        raise ValueError(f'split must be one of {sorted(SPLITS)}, got {split!r}')
    if resolution < 8 or CANVAS % resolution != 0:
        raise UserError(f'the collage dataset renders at powers of two from 8 to {CANVAS} px, not {resolution}')


def collage_chunks(n, resolution, seed=0, split='train', chunk=64):
    """Yield (images uint8 [b, 3, R, R], masks uint8 [b, R, R]) for images 0..n-1, in order, in chunks."""
    _check(resolution, split)
    photos()  # load (and check) once before forking, so the workers share the decoded photographs
    starts = range(0, n, chunk)

    def render(k):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the images are small: one thread each, in parallel processes, is faster
        try:
            items = [_render_one(resolution, seed, split, i) for i in range(starts[k], min(starts[k] + chunk, n))]
        finally:
            torch.set_num_threads(threads)
        return np.stack([x for x, _ in items]), np.stack([m for _, m in items])
    yield from ordered_map(render, len(starts), workers=default_workers(n))
