"""Image grids written at snapshots: composites, masks, layers (un-shifted and shifted) and gradient heat-maps."""
import numpy as np
import PIL.Image
import torch


def to_uint8(x, drange=(-1, 1)):
    """Float [N,C,H,W] in `drange` -> uint8 [N,H,W,3] (1-channel inputs are shown grey)."""
    lo, hi = drange
    x = ((x.detach().float().cpu() - lo) * (255 / (hi - lo))).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1).numpy()


def grid(images, cols):
    """uint8 [N,H,W,3] -> one [rows*H, cols*W, 3] image, row-major, black where N falls short."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    canvas = np.zeros([rows * h, cols * w, c], dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = images[i]
    return canvas


def save_grid(images, path, cols):
    PIL.Image.fromarray(grid(images, cols)).save(path)


def heatmap(x):
    """Non-negative [N,1,H,W] -> uint8 colour map, each sample normalised to its 5th-95th percentile."""
    flat = x.detach().float().flatten(1)
    lo = flat.quantile(0.05, dim=1).reshape(-1, 1, 1, 1)
    hi = flat.quantile(0.95, dim=1).reshape(-1, 1, 1, 1)
    t = ((x - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    # A black-red-yellow-white ramp: readable without matplotlib.
    rgb = torch.cat([(3 * t).clamp(0, 1), (3 * t - 1).clamp(0, 1), (3 * t - 2).clamp(0, 1)], dim=1)
    return to_uint8(rgb, drange=(0, 1))


def layer_tiles(layers):
    """[bg, fg, mask, fg*mask, img] of each sample as uint8 tiles [N, 5, H, W, 3]; generate_layer's layers, so the
    fourth tile is the masked foreground on black."""
    tiles = [to_uint8(layers['bg']), to_uint8(layers['fg']), to_uint8(layers['mask'], (0, 1)),
             to_uint8(layers['fg*mask']), to_uint8(layers['img'])]
    return np.stack(tiles, axis=1)


def save_layer_grid(layers, shifted, path, samples_per_row=2):
    """Each sample shows its five layers un-shifted then shifted: 10 tiles per sample."""
    a, b = layer_tiles(layers), layer_tiles(shifted)
    n = a.shape[0]
    tiles = np.concatenate([a, b], axis=1).reshape(n * 10, *a.shape[2:])
    save_grid(tiles, path, cols=10 * samples_per_row)


def save_gradient_grid(shifted, grad_img, grad_mask, path, samples_per_row=4):
    """[img', mask', |dL/dimg'|, |dL/dm'|] per sample."""
    tiles = np.stack([to_uint8(shifted['img']), to_uint8(shifted['mask'], (0, 1)), heatmap(grad_img),
                      heatmap(grad_mask)], axis=1)
    n = tiles.shape[0]
    save_grid(tiles.reshape(n * 4, *tiles.shape[2:]), path, cols=4 * samples_per_row)


def grid_shape(resolution, max_side=32):
    """The original's grid: as many samples as fit a 7680x4320 canvas, between 7x4 and 32x32."""
    return int(np.clip(7680 // resolution, 7, max_side)), int(np.clip(4320 // resolution, 4, max_side))
