"""Fréchet Inception Distance (Heusel et al. 2017): all reals of the dataset vs `num_gen` generated images."""
import numpy as np
import scipy.linalg

from . import metric_utils


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^1/2) of two Gaussians."""
    # sqrtm can return tiny imaginary parts (rank-deficient covariances, rounding); only the real part is meaningful.
    s = np.real(scipy.linalg.sqrtm(sigma1 @ sigma2))
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - 2 * s))


def compute_fid(opts, num_gen):
    real = metric_utils.dataset_stats(opts)
    fake = metric_utils.generator_stats(opts, num_gen)
    if opts.rank != 0:
        return float('nan')
    return frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma)
