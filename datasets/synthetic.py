"""The built-in `synthetic` dataset: one textured object over a textured background, with its exact mask.

- Every image has its own seed [seed, split, index], so image i is the same whatever n is, and the two splits
  never share a seed.
- Geometry lives in normalised coordinates, so masks rendered at 64 and 128 px outline the same object.
- Each object is star-shaped around its centre and stored as a radial profile r(theta). That one representation
  covers ellipses, rounded rectangles, polygons, stars and blobs, and rasterises as one vectorised test.
- Edges are antialiased by SUPERSAMPLE^2 coverage samples per pixel; the mask is coverage > 0.5.
- Not trivial: the object often reuses a background colour, both layers carry texture and lighting, and the
  object casts a soft shadow on the background, so no single colour threshold separates the two.
"""
import numpy as np

from .parallel import default_workers, ordered_map

SPLITS = {'train': 0, 'test': 1, 'val': 2}
VERSION = 1  # part of the cache key: bump when the images change

TABLE_SIZE = 256           # samples of the radial profile r(theta)
GRID = 6                   # control points per side of the smooth-noise fields
SUPERSAMPLE = 4            # coverage samples per pixel side
AREA_RANGE = (0.17, 0.45)  # target object area; margins keep the rendered mask within 15-50 % of the image
MARGIN = 0.02              # the object's bounding box stays this far inside the frame
CENTRE_JITTER = 0.07       # std of the object centre around the image centre, as in CUB's framing
PIXELS_PER_CHUNK = 1 << 18  # bounds the temporaries of one vectorised chunk to tens of MB

SHAPES = ('ellipse', 'roundrect', 'polygon', 'star', 'blob')
BG_PATTERNS = ('gradient', 'noise', 'stripes', 'checkers')
FG_PATTERNS = ('stripes', 'noise', 'gradient', 'spots')

_THETA = np.arange(TABLE_SIZE) * (2 * np.pi / TABLE_SIZE)


# ------------------------------------------------------------------------------------------------------------------
# Scene parameters (per image, small, resolution-independent).

def _polygon_profile(angles, radii):
    """Radial profile of the closed polygon with vertices (angles, radii), angles sorted, gaps < pi."""
    a = np.concatenate([[angles[-1] - 2 * np.pi], angles, [angles[0] + 2 * np.pi]])
    r = np.concatenate([[radii[-1]], radii, [radii[0]]])
    i = np.searchsorted(a, _THETA, side='right') - 1
    a0, a1, r0, r1 = a[i], a[i + 1], r[i], r[i + 1]
    # Polar equation of the line through (a0, r0) and (a1, r1).
    return r0 * r1 * np.sin(a1 - a0) / (r0 * np.sin(_THETA - a0) + r1 * np.sin(a1 - _THETA))


def _shape_profile(rng):
    kind = SHAPES[rng.integers(len(SHAPES))]
    rot = rng.uniform(0, 2 * np.pi)
    phi = _THETA - rot
    if kind == 'ellipse':
        b = rng.uniform(0.5, 1.0)
        return 1 / np.sqrt(np.cos(phi) ** 2 + (np.sin(phi) / b) ** 2)
    if kind == 'roundrect':  # a superellipse: exponent 3..8 goes from pill to nearly sharp corners
        b, p = rng.uniform(0.5, 1.0), rng.uniform(3, 8)
        return (np.abs(np.cos(phi)) ** p + np.abs(np.sin(phi) / b) ** p) ** (-1 / p)
    if kind == 'polygon':
        k = rng.integers(3, 9)
        angles = (np.arange(k) + rng.uniform(-0.15, 0.15, k)) * (2 * np.pi / k)
        radii = rng.uniform(0.85, 1.15, k)
    elif kind == 'star':
        k = 2 * rng.integers(4, 8)
        angles = np.arange(k) * (2 * np.pi / k)
        radii = np.where(np.arange(k) % 2 == 0, 1.0, rng.uniform(0.45, 0.7))
    else:  # blob: a few random low harmonics of log r
        harmonics = np.arange(2, 6)[:, None]
        log_r = rng.normal(0, 0.3 / harmonics) * np.cos(harmonics * _THETA + rng.uniform(0, 2 * np.pi, (4, 1)))
        return np.exp(log_r.sum(0))
    order = np.argsort((angles + rot) % (2 * np.pi))
    return _polygon_profile(((angles + rot) % (2 * np.pi))[order], radii[order])


def _place_shape(rng):
    """Draw a shape, scale it to a target area and centre it (with jitter) so that it fits in the frame."""
    while True:
        profile = _shape_profile(rng)
        area = rng.uniform(*AREA_RANGE)
        profile = profile * np.sqrt(area / (np.pi * np.mean(profile ** 2)))
        x, y = profile * np.cos(_THETA), profile * np.sin(_THETA)
        extent = max(x.max() - x.min(), y.max() - y.min())
        if extent > 1 - 2 * MARGIN:  # elongated: shrink to fit, and redraw if that makes it too small
            shrink = (1 - 2 * MARGIN) / extent
            profile, x, y, area = profile * shrink, x * shrink, y * shrink, area * shrink ** 2
        if area >= AREA_RANGE[0]:
            break
    cx = np.clip(0.5 + rng.normal(0, CENTRE_JITTER), MARGIN - x.min(), 1 - MARGIN - x.max())
    cy = np.clip(0.5 + rng.normal(0, CENTRE_JITTER), MARGIN - y.min(), 1 - MARGIN - y.max())
    return profile, cx, cy, np.sqrt(area / np.pi)


def _colour(rng):
    hue, sat, val = rng.random(), rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.95)
    pure = np.clip(np.abs((hue * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)
    return val * (1 - sat + sat * pure)


def _layer(rng, patterns, palette=(None, None)):
    """Texture parameters of one layer: pattern P in [0, 1] blends colours c0 -> c1, under smooth lighting.
    Colours given in `palette` are reused (jittered) instead of drawn."""
    c0, c1 = (_colour(rng) if c is None else np.clip(c + rng.normal(0, 0.05, 3), 0, 1) for c in palette)
    c1 = c0 + (c1 - c0) * rng.uniform(0.35, 1.0)
    return dict(pattern=rng.integers(len(patterns)), c0=c0, c1=c1, angle=rng.uniform(0, 2 * np.pi),
                freq=rng.uniform(2, 8), phase=rng.uniform(0, 2 * np.pi), grid=rng.random((GRID, GRID)),
                light=rng.random((GRID, GRID)), light_amp=rng.uniform(0.1, 0.5))


def _scene(rng):
    profile, cx, cy, radius = _place_shape(rng)
    bg = _layer(rng, BG_PATTERNS)
    # The object reuses the background's palette (1/3), one of its colours (1/3) or none (1/3).
    palette = [(bg['c0'], bg['c1']), (bg['c1'], None), (None, None)][rng.integers(3)]
    fg = _layer(rng, FG_PATTERNS, palette)
    light_dir = rng.uniform(0, 2 * np.pi)
    shadow = rng.uniform(0, 0.5) * (rng.random() < 0.6)
    return dict(profile=profile, cx=cx, cy=cy, radius=radius, bg=bg, fg=fg,
                shading=rng.uniform(0, 0.5), light=(np.cos(light_dir), np.sin(light_dir)),
                shadow=shadow, shadow_offset=rng.normal(0, 0.04, 2), noise=rng.uniform(0.005, 0.03))


# ------------------------------------------------------------------------------------------------------------------
# Rendering (vectorised over a chunk of images).

def _stack(scenes, key, layer=None):
    values = [s[layer][key] if layer else s[key] for s in scenes]
    return np.asarray(values, dtype=np.float32)


def _radius_at(profile, rows, dx, dy):
    """r(theta) at offsets (dx, dy) from the centre, profile row `rows` (broadcast with dx), linearly interpolated."""
    t = np.arctan2(dy, dx) * np.float32(TABLE_SIZE / (2 * np.pi)) % TABLE_SIZE
    i0 = t.astype(np.int32)
    w = t - i0
    i0 %= TABLE_SIZE  # float rounding can give t == TABLE_SIZE
    flat, base = profile.ravel(), rows * TABLE_SIZE
    return flat[base + i0] * (1 - w) + flat[base + (i0 + 1) % TABLE_SIZE] * w


def _grid_coords(res):
    return (np.arange(res, dtype=np.float32) + 0.5) / res


def _coverage(profile, cx, cy, res):
    """Fraction of each pixel inside the object [B, R, R]. Pixels that the boundary cannot cross are 0 or 1 from
    their centre; only the others average SUPERSAMPLE^2 point samples (most of the work, on a few % of pixels)."""
    c = _grid_coords(res)
    rows = np.arange(len(profile))[:, None, None]
    dx, dy = c[None, None, :] - cx[:, None, None], c[None, :, None] - cy[:, None, None]
    rho = np.sqrt(dx * dx + dy * dy)
    gap = rho - _radius_at(profile, rows, dx, dy)
    # Within a pixel, rho moves by at most half a diagonal h and theta by at most (pi/2) h / rho, so r(theta) by
    # slope times that, where slope = max |dr/dtheta| of the (piecewise-linear) profile.
    slope = np.abs(profile - np.roll(profile, 1, axis=1)).max(axis=1) * np.float32(TABLE_SIZE / (2 * np.pi))
    h = np.float32(0.5 ** 0.5 / res)
    margin = h * (1 + 1.6 * slope[:, None, None] / np.maximum(rho, h))
    alpha = (gap < 0).astype(np.float32)

    b, y, x = np.nonzero(np.abs(gap) < margin)
    offsets = (np.arange(SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    sx = (x[:, None, None] + offsets[None, None, :]) / res - cx[b][:, None, None]
    sy = (y[:, None, None] + offsets[None, :, None]) / res - cy[b][:, None, None]
    inside = sx * sx + sy * sy < _radius_at(profile, b[:, None, None], sx, sy) ** 2
    alpha[b, y, x] = inside.mean(axis=(1, 2))
    return alpha


def _smooth_noise(grids, res):
    """Resolution-independent smooth fields from [B, G, G] control grids: separable eased-linear interpolation."""
    g = _grid_coords(res) * (GRID - 1)
    i0 = np.minimum(g.astype(np.int64), GRID - 2)
    f = g - i0
    f = f * f * (3 - 2 * f)
    weights = np.zeros((res, GRID), np.float32)
    weights[np.arange(res), i0] = 1 - f
    weights[np.arange(res), i0 + 1] = f
    return weights @ grids.astype(np.float32) @ weights.T


def _pattern(name, p, u, v, res, fine):
    """Pattern field in [0, 1] for images with parameters p (arrays [B, 1, 1]); u, v are pixel-centre coordinates."""
    along = u * np.cos(p['angle']) + v * np.sin(p['angle'])
    across = v * np.cos(p['angle']) - u * np.sin(p['angle'])
    wave = 2 * np.pi * p['freq']
    blur = np.sinc(p['freq'] / res)  # a one-pixel box filter's attenuation of a wave: keeps stripes alias-free
    if name == 'gradient':
        return np.clip(along - (np.cos(p['angle']) + np.sin(p['angle'])) / 2 + 0.5, 0, 1)
    if name == 'noise':
        return np.clip(_smooth_noise(p['grid'], res) + 0.15 * fine, 0, 1)
    if name == 'stripes':
        return 0.5 + 0.5 * blur * np.sin(wave * along + p['phase'])
    if name == 'checkers':
        return 0.5 + 0.5 * blur ** 2 * np.sin(wave * along + p['phase']) * np.sin(wave * across)
    if name == 'spots':
        return (blur * (1 + np.cos(wave * along + p['phase'])) * (1 + np.cos(wave * across)) / 4) ** 2
    raise ValueError(name)


def _layer_image(scenes, layer, patterns, res, fine):
    """[B, 3, R, R] float colours of one layer."""
    u, v = _grid_coords(res)[None, None, :], _grid_coords(res)[None, :, None]
    kinds = _stack(scenes, 'pattern', layer).astype(np.int64)
    params = {k: _stack(scenes, k, layer)[:, None, None] for k in ('angle', 'freq', 'phase')}
    params['grid'] = _stack(scenes, 'grid', layer)
    field = np.empty((len(scenes), res, res), np.float32)
    for k, name in enumerate(patterns):
        sel = kinds == k
        if sel.any():
            field[sel] = _pattern(name, {key: val[sel] for key, val in params.items()}, u, v, res, fine[sel])
    c0, c1 = _stack(scenes, 'c0', layer), _stack(scenes, 'c1', layer)
    colour = c0[:, :, None, None] + (c1 - c0)[:, :, None, None] * field[:, None]
    light = 1 + _stack(scenes, 'light_amp', layer)[:, None, None] * (_smooth_noise(_stack(scenes, 'light', layer), res) - 0.5)
    return colour * light[:, None]


def _render(scenes, noises, res):
    """Images float [B, 3, R, R] in [0, 1] and coverage [B, R, R] of a chunk of scenes."""
    profile = _stack(scenes, 'profile')
    cx, cy = _stack(scenes, 'cx'), _stack(scenes, 'cy')
    alpha = _coverage(profile, cx, cy, res)

    bg = _layer_image(scenes, 'bg', BG_PATTERNS, res, noises[:, 0])
    offset = _stack(scenes, 'shadow_offset')
    u, v = _grid_coords(res)[None, None, :], _grid_coords(res)[None, :, None]
    dx, dy = u - (cx + offset[:, 0])[:, None, None], v - (cy + offset[:, 1])[:, None, None]
    rel = np.sqrt(dx * dx + dy * dy) / _radius_at(profile, np.arange(len(profile))[:, None, None], dx, dy)
    bg *= 1 - (_stack(scenes, 'shadow')[:, None, None] * np.clip((1.15 - rel) / 0.35, 0, 1))[:, None]

    fg = _layer_image(scenes, 'fg', FG_PATTERNS, res, noises[:, 1])
    light = _stack(scenes, 'light')
    across = ((u - cx[:, None, None]) * light[:, 0, None, None] + (v - cy[:, None, None]) * light[:, 1, None, None])
    across /= _stack(scenes, 'radius')[:, None, None]
    fg *= (1 - _stack(scenes, 'shading')[:, None, None] * np.clip(across, -1, 1) / 2)[:, None]

    image = alpha[:, None] * fg + (1 - alpha[:, None]) * bg
    image += _stack(scenes, 'noise')[:, None, None, None] * noises[:, 2:]
    return np.clip(image, 0, 1), alpha


def _render_chunk(start, stop, resolution, seed, split):
    scenes, noises = [], []
    for i in range(start, stop):
        rng = np.random.default_rng([seed, SPLITS[split], i])
        scenes.append(_scene(rng))
        noises.append(rng.standard_normal((5, resolution, resolution), dtype=np.float32))  # drawn last
    image, alpha = _render(scenes, np.stack(noises), resolution)
    return (image * 255 + 0.5).astype(np.uint8), (alpha > 0.5).astype(np.uint8)


def synthetic_chunks(n, resolution, seed=0, split='train'):
    """Yield (images uint8 [b, 3, R, R], masks uint8 [b, R, R]) for images 0..n-1, in order, in chunks."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {sorted(SPLITS)}, got {split!r}')
    chunk = max(1, PIXELS_PER_CHUNK // resolution ** 2)
    starts = range(0, n, chunk)

    def render(k):
        return _render_chunk(starts[k], min(starts[k] + chunk, n), resolution, seed, split)
    yield from ordered_map(render, len(starts), workers=default_workers(n))
