"""Foreground/background segmentation scores: pACC, IoU, mIoU, DRC_IoU and DRC_DICE.

Dataset-level scores come from one confusion matrix accumulated over every pixel of every image; the
DRC-style scores are per-image IoU/DICE averaged over images, the form used by Deep Region Competition.
Class 1 is foreground. There is no fg/bg flip matching: class 1 is always the generator's alpha >= 0.5 region.
"""
import torch


def confusion_matrix(pred, gt, num_classes=2):
    """int64 [K, K] counts with rows = prediction and columns = ground truth, via one bincount."""
    if pred.shape != gt.shape:
        raise ValueError(f'pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape')
    idx = pred.reshape(-1).long() * num_classes + gt.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu()


def confusion_scores(cm):
    """pACC, foreground IoU and mean IoU of a confusion matrix. A class absent from both pred and gt has IoU 0."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp / union.clamp(min=1e-8)  # The original replaced a zero union by 1e-8, so such a class scores 0.
    return dict(pACC=float(tp.sum() / cm.sum()), IoU=float(iou[1]), mIoU=float(iou.mean()))


def per_image_iou_dice(pred, gt):
    """Per-image foreground IoU and DICE of binary [B, H, W] masks, as two float64 [B] tensors.

    Convention: an image whose prediction AND ground truth are both empty scores IoU = DICE = 1.0 (a correct
    "no foreground" answer). The original divided 0 by 0 there, and one NaN made the whole mean NaN.
    """
    p = pred.reshape(len(pred), -1).bool()
    g = gt.reshape(len(gt), -1).bool()
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    total = p.sum(1).double() + g.sum(1).double()
    empty = union == 0
    iou = torch.where(empty, 1.0, inter / union.clamp(min=1))
    dice = torch.where(empty, 1.0, 2 * inter / total.clamp(min=1))
    return iou, dice


class SegmentationMeter:
    """Accumulates batches of (pred, gt) label maps and reports the five scores."""

    def __init__(self):
        self.cm = torch.zeros(2, 2, dtype=torch.int64)
        self.iou, self.dice = [], []

    def update(self, pred, gt):
        self.cm += confusion_matrix(pred, gt)
        iou, dice = per_image_iou_dice(pred, gt)
        self.iou.append(iou.cpu())
        self.dice.append(dice.cpu())

    def result(self):
        if not self.iou:
            raise ValueError('no images were scored')
        return dict(**confusion_scores(self.cm), DRC_IoU=float(torch.cat(self.iou).mean()),
                    DRC_DICE=float(torch.cat(self.dice).mean()))
