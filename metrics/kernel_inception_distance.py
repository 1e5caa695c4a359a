"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel, averaged over subsets."""
import numpy as np

from . import metric_utils


def kernel_distance(x, y, num_subsets, max_subset_size, seed=0):
    """Mean over `num_subsets` random subsets (m = min(|x|, |y|, max_subset_size) rows each, without replacement) of
    the unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, the StyleGAN2-ADA estimator."""
    rng = np.random.RandomState(seed)  # Private RNG: the same subsets for the same features.
    d = x.shape[1]
    m = min(len(x), len(y), max_subset_size)
    total = 0.0
    for _ in range(num_subsets):
        # float64: the result is a small difference of sums over m^2 kernel values.
        a = x[rng.choice(len(x), m, replace=False)].astype(np.float64)
        b = y[rng.choice(len(y), m, replace=False)].astype(np.float64)
        kxx_kyy = (a @ a.T / d + 1) ** 3 + (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        total += (kxx_kyy.sum() - np.diag(kxx_kyy).sum()) / (m - 1) - kxy.sum() * 2 / m
    return float(total / num_subsets / m)


def compute_kid(opts, num_gen, num_subsets, max_subset_size):
    real = metric_utils.dataset_stats(opts)
    fake = metric_utils.generator_stats(opts, num_gen)
    if opts.rank != 0:
        return float('nan')
    return kernel_distance(fake.features, real.features, num_subsets, max_subset_size)
