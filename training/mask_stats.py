"""Is the generated mask the object? Its polarity (mass in the centre against the border) and the diversity of its
shapes, for generated masks and for true ones alike.

An inverted run (the foreground layer holds the surround, the background layer the object) and a collapsed run
(one shape for every z) both train without complaint and both give a U-Net a confidently wrong teacher, so the
training log, the sample generator and the auto-test measure them:
- polarity: objects sit inside the frame, so a mask whose outer ring (1/8 of the side) holds more of it than the
  central square (half the side) describes the surround. A sample counts as inverted when its border mean exceeds its
  centre mean by more than MARGIN, as upright in the opposite case (a blank mask at initialisation is neither). A run
  is called inverted when most samples are, and its masks have formed (BINARY_MIN): the soft blobs of a network at
  initialisation lean either way by chance.
- shape_iou: the mean IoU over all pairs of binarised masks, each shifted so that its centroid sits at the centre.
  1 means one shape (and size) for every sample; the true masks of CUB-like data score far lower.
- area_sd: the standard deviation of the per-sample mask area. A generator can vary its shapes a little and still
  draw every object at one size; a U-Net taught by it then predicts that size for every real object.
"""
import numpy as np
import torch

MARGIN = 0.1
INVERTED_WARN = 0.5     # warn when more than this fraction of samples is inverted...
BINARY_MIN = 0.5        # ...and the masks have formed (at least this fraction of pixels below 0.1 or above 0.9)
COLLAPSE_WARN = 0.85    # warn when the centred shapes overlap this much on average
SIZE_SD_WARN = 0.5      # warn when the areas spread less than this fraction of the true masks' spread
UPRIGHT_MIN = 0.5       # a finished model's formed masks should be upright in most samples


def _as_batch(masks):
    masks = torch.as_tensor(masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    return masks.float()


def border_ring(h, w, device=None):
    """[H, W] bool: the outer ring of the image, an eighth of its height wide (at least one pixel)."""
    ring = max(1, round(h / 8))
    outer = torch.ones(h, w, dtype=torch.bool, device=device)
    outer[ring:h - ring, ring:w - ring] = False
    return outer


def border_and_centre(masks):
    """Per-sample mean of the mask on the outer ring and on the central square: two [N] tensors."""
    m = _as_batch(masks)
    h, w = m.shape[-2:]
    centre = torch.zeros(h, w, dtype=torch.bool)
    centre[h // 4:h - h // 4, w // 4:w - w // 4] = True
    return m[:, border_ring(h, w)].mean(1), m[:, centre].mean(1)


def centred(binary):
    """Shift each mask [N, H, W] (0/1) by whole pixels so that its centroid is at the image centre (zero fill)."""
    n, h, w = binary.shape
    mass = binary.sum(dim=(1, 2)).clamp(min=1)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    cy = (binary.sum(2) * ys).sum(1) / mass
    cx = (binary.sum(1) * xs).sum(1) / mass
    dy = torch.round((h - 1) / 2 - cy).long()
    dx = torch.round((w - 1) / 2 - cx).long()
    src_y = ys.long()[None, :] - dy[:, None]
    src_x = xs.long()[None, :] - dx[:, None]
    valid = ((src_y >= 0) & (src_y < h))[:, :, None] & ((src_x >= 0) & (src_x < w))[:, None, :]
    rows = torch.arange(n)[:, None, None]
    out = binary[rows, src_y.clamp(0, h - 1)[:, :, None], src_x.clamp(0, w - 1)[:, None, :]]
    return out * valid


def shape_iou(masks, max_samples=512):
    """Mean pairwise IoU of the centred, binarised masks (the first max_samples); nan with fewer than 2."""
    binary = (_as_batch(masks)[:max_samples] > 0.5).float()
    if len(binary) < 2:
        return float('nan')
    flat = centred(binary).flatten(1)
    inter = flat @ flat.t()
    size = flat.sum(1)
    union = size[:, None] + size[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
    n = len(flat)
    return float((iou.sum() - iou.diagonal().sum()) / (n * (n - 1)))


def summarize(masks):
    """The figures logged for a set of masks (soft or binary, [N, 1, H, W] or [N, H, W])."""
    m = _as_batch(masks)
    border, centre = border_and_centre(m)
    return {
        'area': float(m.mean()),
        'binary': float(((m < 0.1) | (m > 0.9)).float().mean()),
        'border': float(border.mean()),
        'centre': float(centre.mean()),
        'inverted': float((border > centre + MARGIN).float().mean()),
        'upright': float((centre > border + MARGIN).float().mean()),
        'shape_iou': shape_iou(m),
        'area_sd': float(m.mean(dim=(1, 2)).std(unbiased=False)) if len(m) > 1 else float('nan'),
    }


def warnings(summary, reference_shape_iou=None, finished=False, reference_area_sd=None):
    """{kind: one-line warning} for a summary; kinds: inverted, empty, full, collapsed, less_varied, one_size (the last
    two need the true masks' figures as a reference), and for the masks
    of a finished model (`finished`: samples, the auto-test, the report) also unformed and off_object. During
    training the masks of the first ticks are unformed by nature, so the training log leaves those two out."""
    out = {}
    if finished and summary['binary'] < BINARY_MIN:
        out['unformed'] = (f'masks not formed: only {summary["binary"]:.0%} of pixels are below 0.1 or above 0.9, '
                           f'so the synthetic masks are soft or noisy; train longer or look at the layer grids')
    elif (finished and 0.02 <= summary['area'] <= 0.98 and not is_inverted(summary)
          and summary['upright'] < UPRIGHT_MIN):
        # A low shape IoU from such masks is scatter, not varied shapes.
        out['off_object'] = (f'masks not on a central object: {summary["upright"]:.0%} of samples hold more mask in '
                             f'the centre than on the border ({summary["inverted"]:.0%} the reverse)')
    if is_inverted(summary):
        out['inverted'] = (f'masks look inverted: {summary["inverted"]:.0%} of samples have more mask on the border '
                           f'({summary["border"]:.2f}) than in the centre ({summary["centre"]:.2f}); the foreground '
                           f'layer holds the surround')
    if summary['area'] < 0.02 or summary['area'] > 0.98:
        kind = 'empty' if summary['area'] < 0.02 else 'full'
        out[kind] = f'masks are {kind} (mean area {summary["area"]:.3f})'
    elif summary['shape_iou'] > COLLAPSE_WARN and summary['binary'] > 0.8:
        out['collapsed'] = f'one shape for all samples: centred masks overlap with IoU {summary["shape_iou"]:.2f} on average'
    if reference_shape_iou is not None and summary['shape_iou'] > 1.2 * reference_shape_iou:
        out['less_varied'] = (f'shapes less varied than the true masks: centred IoU {summary["shape_iou"]:.2f} '
                              f'against {reference_shape_iou:.2f}')
    area_sd = summary.get('area_sd')  # Absent from the logs of runs made before it was measured.
    if reference_area_sd is not None and area_sd is not None and area_sd < SIZE_SD_WARN * reference_area_sd:
        out['one_size'] = (f'object sizes less varied than the true masks: the per-sample mask area has SD '
                           f'{area_sd:.3f} against {reference_area_sd:.3f}, so a U-Net taught by these samples '
                           f'predicts one size')
    return out


def is_inverted(summary):
    """Formed masks, most of them holding more mask on the border than in the centre."""
    return summary['inverted'] > INVERTED_WARN and summary['binary'] >= BINARY_MIN


def decide_flip(summary, polarity):
    """Whether to flip (mask -> 1 - mask, swap fg and bg) for --polarity=auto|keep|flip."""
    if polarity not in ('auto', 'keep', 'flip'):
        raise ValueError(f'polarity must be auto, keep or flip, not {polarity!r}')
    return is_inverted(summary) if polarity == 'auto' else polarity == 'flip'
