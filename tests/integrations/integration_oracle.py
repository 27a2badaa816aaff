"""Oracle of the integration tests: an exact 2-D Gaussian mixture behind the `Density` protocol, its
exact moments, and moment checks whose tolerance comes from the effective sample size.

Pass criterion for a sampler: every coordinate's mean within 4 standard errors of the exact mean and
every covariance entry within 4 standard errors of the exact covariance, a standard error being the
standard deviation of the summand ((x_i) or (x_i - mu_i)(x_j - mu_j)) over sqrt(ESS of that summand),
with the ESS estimated by the framework's own estimator (i.i.d. draws: ESS = number of draws).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from disco_plug.gmm import GaussianMixture
from disco_plug.integrations._density import GaussianMixtureDensity

TARGET = GaussianMixture.from_components(
    [0.4, 0.6],
    torch.tensor([[-0.6, 0.4], [0.7, -0.3]], dtype=torch.float64),
    torch.tensor([[0.5, 0.6], [0.4, 0.3]], dtype=torch.float64))
DENSITY = GaussianMixtureDensity(TARGET)


def exact_moments(gmm: GaussianMixture = TARGET) -> tuple[Tensor, Tensor]:
    """Mean (d,) and covariance (d, d) of a single mixture, in closed form."""
    w = gmm.log_weights.exp()[0].to(torch.float64)
    means, var, rot = (t[0].to(torch.float64) for t in (gmm.means, gmm.variances, gmm.rotation))
    mean = w @ means
    comp_cov = rot @ torch.diag_embed(var) @ rot.T  # (K, d, d)
    second = (w[:, None, None] * (comp_cov + means[:, :, None] * means[:, None, :])).sum(0)
    return mean, second - mean[:, None] * mean[None, :]


def summands(draws: Tensor, mean: Tensor) -> Tensor:
    """(chains, n, d + d*d): x_i and (x_i - mu_i)(x_j - mu_j) for every draw."""
    c = draws - mean
    return torch.cat([draws, (c[..., :, None] * c[..., None, :]).flatten(-2)], -1)


def assert_moments(draws: Tensor, ess_fn: Callable[[Tensor], Tensor], gmm: GaussianMixture = TARGET,
                   z: float = 4.0, slack: float = 0.0) -> Tensor:
    """Check draws (chains, n, d) against the exact moments of gmm; return the z-scores.

    ess_fn maps summands (chains, n, k) to their ESS (k,). ``slack`` (in units of the target's
    standard deviations, resp. sd_i sd_j) widens the tolerance for an approximate score and is stated
    by the caller."""
    draws = torch.as_tensor(draws, dtype=torch.float64)
    mean, cov = exact_moments(gmm)
    d = mean.shape[0]
    s = summands(draws, mean)
    ess = torch.as_tensor(ess_fn(s), dtype=torch.float64).clamp_min(1.0)
    estimate = s.mean((0, 1))
    exact = torch.cat([mean, cov.flatten()])
    se = s.flatten(0, 1).std(0) / ess.sqrt()
    sd = cov.diagonal().sqrt()
    scale = torch.cat([sd, (sd[:, None] * sd[None, :]).flatten()])
    err = (estimate - exact).abs()
    tol = z * se + slack * scale
    names = [f"mean[{i}]" for i in range(d)] + [f"cov[{i},{j}]" for i in range(d) for j in range(d)]
    bad = [f"{n}: {e:.3f} vs exact {x:.3f} (tol {t:.3f}, ESS {k:.0f})"
           for n, e, x, t, k, ok in zip(names, estimate.tolist(), exact.tolist(), tol.tolist(), ess.tolist(),
                                        (err <= tol).tolist()) if not ok]
    assert not bad, "moments off: " + "; ".join(bad)
    return (estimate - exact) / se


def iid_ess(s: Tensor) -> Tensor:
    """ESS of independent draws: their number."""
    return torch.full((s.shape[-1],), float(s.shape[0] * s.shape[1]))


# Stated tolerance for samplers driven by the bundled estimator instead of the exact mixture: the
# moments may be off by this many target standard deviations (sd_i sd_j for covariances) beyond the
# 4 standard errors of sampling noise. Forgetting the target (e.g. sampling N(0, I)) is off by > 0.5.
ESTIMATOR_SLACK = 0.15


def posterior_of_prior_times_gaussian(obs, noise_var):
    """Exact posterior of x ~ TARGET (diagonal components), obs ~ N(x, noise_var I)."""
    w, m, v = TARGET.log_weights.exp()[0], TARGET.means[0], TARGET.variances[0]
    post_v = 1 / (1 / v + 1 / noise_var)
    post_m = post_v * (m / v + obs / noise_var)
    evidence = torch.distributions.Normal(m, (v + noise_var).sqrt()).log_prob(obs).sum(-1)
    return GaussianMixture.from_components(torch.softmax(w.log() + evidence, 0), post_m, post_v)


class Counting:
    """Wraps a density and counts its calls (each adapter should make one per evaluation)."""

    def __init__(self, density):
        self.density, self.calls = density, 0

    @property
    def dim(self):
        return self.density.dim

    def log_density_and_score(self, y):
        self.calls += 1
        return self.density.log_density_and_score(y)


class SkewedHeads:
    """A density whose score head is NOT the gradient of its log-density head (constant 0): an adapter
    whose gradient equals (1, -2) took it from the score head."""

    dim = 2

    def log_density_and_score(self, y):
        return torch.zeros(y.shape[0], dtype=y.dtype), torch.tensor([1.0, -2.0], dtype=y.dtype).expand_as(y)


def lognormal_posterior(n: int = 1024, seed: int = 0):
    """An InferenceData-style posterior of (mu, sigma) with mu ~ N(1, 0.5^2) and log sigma ~ N(-1, 0.3^2)
    independent (2 chains), and the exact mean and sd of sigma: a constrained parameter in closed form."""
    import numpy as np

    rng = np.random.default_rng(seed)
    posterior = {"mu": rng.normal(1.0, 0.5, size=(2, n // 2)),
                 "sigma": np.exp(rng.normal(-1.0, 0.3, size=(2, n // 2)))}
    mean = math.exp(-1.0 + 0.3**2 / 2)
    sd = math.sqrt((math.exp(0.3**2) - 1) * math.exp(2 * -1.0 + 0.3**2))
    return posterior, mean, sd


def assert_close_in_sds(draws, mean: float, sd: float, ess: float, slack: float = ESTIMATOR_SLACK) -> None:
    """Mean within 4 SE + slack sds of the exact mean; sd within 4 SE + slack (relative)."""
    import numpy as np

    draws = np.asarray(draws, dtype=np.float64).reshape(-1)
    se = sd / math.sqrt(ess)
    assert abs(draws.mean() - mean) <= 4 * se + slack * sd, (draws.mean(), mean, se)
    assert abs(draws.std() / sd - 1) <= 4 / math.sqrt(2 * ess) + slack, (draws.std(), sd, ess)
