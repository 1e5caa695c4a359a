"""Self-training of the segmenter on the real, unlabelled training images (opt-in; not in the original).

After the U-Net has learnt from the generator's samples, it labels the images the GAN was trained on; each
round then trains on batches that are half synthetic pairs and half of those images with their pseudo-labels.
Only confident pixels count: where neither class reaches CONFIDENCE the label is UNSURE, which the loss ignores.
The net then adapts to real textures without ever seeing a true mask (docs/results.md, "Self-training").

A round's labels depend only on the net at the round's start, which is always a checkpoint (seg_eval validates at
every round end), so a resumed run relabels with the same net and continues exactly.
"""
import numpy as np
import torch

import datasets
from metrics.seg_augment import to_float

CONFIDENCE = 0.9
UNSURE = 2        # the label of a pixel the net was not sure of, through augmentation (a third one-hot class)
IGNORE = -100     # what F.cross_entropy skips by default


def round_iters(iters):
    """Iterations of one round: half those of the synthetic phase."""
    return max(1, iters // 2)


def round_starts(iters, rounds):
    """The iterations at which rounds begin (the synthetic phase is 0..iters-1)."""
    return [iters + r * round_iters(iters) for r in range(rounds)]


def total_iters(iters, rounds):
    return iters + rounds * round_iters(iters)


def load_images(data, size, data_root=None):
    """The unlabelled images uint8 [N, 3, S, S] of a GAN training set: a built-in name (its train split), cub, dog,
    car, an image folder or a zip; decoded once into the training-set cache."""
    return torch.from_numpy(np.array(datasets.load_training_set(data, size, data_root=data_root).images))


@torch.no_grad()
def pseudo_labels(net, images_u8, batch=64, confidence=CONFIDENCE):
    """int64 [N, H, W] labels of uint8 images [N, 3, H, W]: the class whose probability reaches `confidence`, else
    UNSURE. Eval mode (BN running statistics), so the labels depend on the weights only."""
    was_training = net.training
    net.eval()
    out = []
    for i in range(0, len(images_u8), batch):
        prob = net(to_float(images_u8[i:i + batch])).softmax(dim=1)
        confident, label = prob.max(dim=1)
        out.append(torch.where(confident >= confidence, label, UNSURE))
    net.train(was_training)
    return torch.cat(out)


def mixed_batch(synthetic, images_u8, labels, n_real, generator):
    """A synthetic (float image, label) batch followed by n_real pseudo-labelled images drawn with `generator`."""
    idx = torch.randint(len(images_u8), (n_real,), generator=generator).to(images_u8.device)
    x, y = synthetic
    return torch.cat([x, to_float(images_u8[idx])]), torch.cat([y, labels[idx]])
