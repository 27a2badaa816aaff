"""Oracle for the sampler tests: an exact 2-D Gaussian mixture and a tolerance derived from
the sample size.

Pass criterion: the energy distance between the sampler's N chains and N fresh target samples must be
at most the mean plus 4 standard deviations of the energy distance between two fresh target sets of
the same size (40 replicates). That is the sampling noise of two size-N sets; test_threshold_has_power
shows a mildly wrong distribution fails it.
"""

import torch

from disco_plug.gmm import GaussianMixture
N = 512  # chains per test

TARGET = GaussianMixture.from_components(
    [0.3, 0.5, 0.2],
    torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.5]], dtype=torch.float64),
    torch.tensor([[0.3, 0.5], [0.6, 0.2], [0.4, 0.4]], dtype=torch.float64))
SIGMA_MAX = 20.0


def log_density_and_score(x, sigma):
    return (TARGET.convolve(sigma) if sigma > 0 else TARGET).log_prob_and_score(x)


def prior(sigma, num, generator):
    """Moment-matched start for p_sigma: N(mean, cov + sigma^2 I) of the target (exact moments)."""
    w = TARGET.log_weights.exp()[0]
    means, var = TARGET.means[0], TARGET.variances[0]
    mean = w @ means
    cov = (w[:, None, None] * (torch.diag_embed(var) + means[:, :, None] * means[:, None, :])).sum(0)
    cov = cov - mean[:, None] * mean[None, :] + sigma**2 * torch.eye(2, dtype=torch.float64)
    return mean + torch.randn(num, 2, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T


