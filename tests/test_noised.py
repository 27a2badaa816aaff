"""NoisedScore and FittedEstimator.sample, on a freshly initialized DiScoFormer.

A fresh network has zero-initialized heads, so its estimate is exactly the Gaussian fit of its context
(log N and score -y in whitened space). That gives a closed-form oracle for the whole pipeline: the
estimate at noise level sigma is the Gaussian fit of X convolved with N(0, sigma^2 I) (mode
"convolved") or of X + sigma E (mode "noised_context"), and samplers driven by it must reproduce the
mean and covariance of X.
"""

import numpy as np
import pytest
import torch

from disco_plug.config import ModelConfig
from disco_plug.estimator import Estimator
from disco_plug.blend.gated import GatedBlend
from disco_plug.noised import SAMPLING_METHODS, NoisedScore
from disco_plug.samplers import get_sigmas_karras, sample_probability_flow


@pytest.fixture(scope="module")
def fresh_estimator():
    """Zero gates and no mixture skips: exactly the Gaussian fit of its context, a closed-form oracle.
    (With mixture skips, far queries follow the fitted mixture, which is Gaussian here only up to its
    covariance floor.)"""
    torch.manual_seed(0)
    return Estimator(GatedBlend(ModelConfig(blend="gated", max_dim=4, width=32, depth=2, heads=4, context_keys=128,
                                             mixture_penalties=(), t_mixture_penalties=(), gate_context_features=False)))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([[1.0, 0.0], [0.8, 0.5]], dtype=torch.float64)
    return torch.randn(200, 2, generator=g, dtype=torch.float64) @ a + torch.tensor([3.0, -1.0], dtype=torch.float64)


def gaussian_fit_score(x, context, noise_var=0.0):
    mean, cov = context.mean(0), torch.cov(context.T, correction=0)
    noised = cov + noise_var * torch.eye(2, dtype=cov.dtype)
    ridged = noised + 1e-6 * torch.diag(noised.diagonal())  # the whitening's ridge, relative to each variance
    return -(x - mean) @ torch.linalg.inv(ridged)


def test_convolved_score_is_the_gaussian_fit_of_the_noised_distribution(fresh_estimator, data):
    noised = NoisedScore(fresh_estimator.fit(data))
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    for sigma in (0.0, 0.1, 0.7, 30.0):
        s = noised.score_fn(x, sigma)
        assert s.shape == (3, 4, 2) and s.dtype == torch.float64
        assert torch.allclose(s, gaussian_fit_score(x, data, sigma**2), rtol=1e-4, atol=1e-6)
    assert noised.noise is None  # nothing is drawn


def test_convolved_twice_adds_the_variances(fresh_estimator, data):
    fitted = fresh_estimator.fit(data)
    twice = fitted.convolved(0.3).convolved(0.4)
    assert twice.noise_std == pytest.approx(0.5) and "noise_std=0.5" in repr(twice)
    assert fitted.convolved(0.0) is fitted
    x = torch.randn(5, 2, dtype=torch.float64)
    assert torch.allclose(twice.score(x), fitted.convolved(0.5).score(x))
    with pytest.raises(ValueError, match="sigma must be a finite noise level"):
        fitted.convolved(float("nan"))
    with pytest.raises(ValueError, match="adapt a noise-free fit"):
        twice.adapt(1)


def test_score_at_sigma_is_the_estimate_from_the_noised_context(fresh_estimator, data):
    noised = NoisedScore(fresh_estimator.fit(data), mode="noised_context",
                         generator=torch.Generator().manual_seed(5))
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    s = noised.score_fn(x, 0.7)
    assert s.shape == (3, 4, 2) and s.dtype == torch.float64
    direct = fresh_estimator.fit(data + 0.7 * noised.noise).score(x.reshape(-1, 2)).reshape(3, 4, 2)
    assert torch.allclose(s, direct)
    assert torch.allclose(s, gaussian_fit_score(x, data + 0.7 * noised.noise), atol=1e-4)
    log_p, score = noised.log_density_and_score_fn(x.float(), 0.0)
    assert log_p.shape == (3, 4) and score.dtype == torch.float32


def test_fixed_noise_draw_makes_results_repeat(fresh_estimator, data):
    fitted = fresh_estimator.fit(data)
    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return NoisedScore(fitted, mode="noised_context", generator=gen).score_fn(data[:5], 1.0)
    a, b, c = draw(3), draw(3), draw(4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_sampling_run_encodes_each_noise_level_once(fresh_estimator, data):
    noised = NoisedScore(fresh_estimator.fit(data), cache_size=2)
    sigmas = get_sigmas_karras(12, 0.05, 20.0)  # Heun visits every level twice, in order
    sample_probability_flow(noised.score_fn, 20 * torch.randn(64, 2, dtype=torch.float64), sigmas)
    assert noised.encodes == 12 and len(noised._levels) == 2  # LRU kept only the last two levels


def test_bad_sigma_and_points_raise(fresh_estimator, data):
    noised = NoisedScore(fresh_estimator.fit(data))
    with pytest.raises(ValueError, match="sigma must be a finite noise level"):
        noised.score_fn(data[:2], -1.0)
    with pytest.raises(ValueError, match="scalar noise level"):
        noised.score_fn(data[:2], torch.ones(2))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        noised.score_fn(torch.zeros(3, 3), 0.5)
    with pytest.raises(ValueError, match="cache_size"):
        NoisedScore(noised.fitted, cache_size=0)
    with pytest.raises(ValueError, match="unknown noise mode 'sampled'"):
        NoisedScore(noised.fitted, mode="sampled")


M = 400
STEPS = {"ode": 20, "pc": 40, "ve_sde": 80, "vp_sde": 80, "annealed_langevin": 200, "langevin": 100, "mala": 100}


def test_noise_draw_gives_the_noised_context_exact_moments(fresh_estimator, data):
    noised = NoisedScore(fresh_estimator.fit(data), mode="noised_context")
    noisy = data + 30.0 * noised.noise
    assert torch.allclose(noisy.mean(0), data.mean(0))
    cov = torch.cov(data.T, correction=0) + 900 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(torch.cov(noisy.T, correction=0), cov)


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_every_method_reproduces_the_estimated_gaussian(fresh_estimator, data, method):
    """Mean and covariance of M draws match the data's Gaussian fit within 5 standard errors."""
    fitted = fresh_estimator.fit(data)
    x = fitted.sample(M, method=method, steps=STEPS[method], generator=torch.Generator().manual_seed(7))
    assert isinstance(x, torch.Tensor) and x.shape == (M, 2) and x.dtype == torch.float64
    mean, cov = data.mean(0), torch.cov(data.T)
    se_mean = (torch.diagonal(cov) / M).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 5 * se_mean).all()), (x.mean(0), mean)
    se_cov = ((cov**2 + torch.outer(torch.diagonal(cov), torch.diagonal(cov))) / M).sqrt()
    assert bool(((torch.cov(x.T) - cov).abs() < 5 * se_cov).all()), (torch.cov(x.T), cov)


def test_sample_returns_numpy_for_numpy_samples_and_checks_arguments(fresh_estimator, data):
    fitted = fresh_estimator.fit(data.numpy().astype(np.float32))
    out = fitted.sample(5, method="ode", steps=5)
    assert isinstance(out, np.ndarray) and out.shape == (5, 2) and out.dtype == np.float32
    assert fitted.score_fn(torch.zeros(2, 2), 0.3).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown sampling method 'euler'"):
        fitted.sample(5, method="euler")
    with pytest.raises(ValueError, match="num must be a positive integer"):
        fitted.sample(0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fitted.sample(5, method="ode", steps=3, corrector_steps=1)


def test_convolved_kde_skip_is_the_clean_kde_convolved_with_the_noise():
    """Oracle for FittedEstimator.convolved's kernels: with one KDE gate at 1 (Scott's bandwidth h, in
    whitened units) and the rest at 0, the clean estimate is the KDE with kernel h^2 C (C the samples'
    covariance) and the estimate at noise level sigma must be that KDE convolved with the noise, the
    kernel h^2 C + sigma^2 I, at every sigma (an earlier version used the noised frame's own bandwidth,
    h^2 (C + sigma^2 I) + sigma^2 I, and over-smoothed p_sigma by a factor 1 + h^2 as sigma grew)."""
    from disco_plug.densities.kde import scott_factor
    torch.manual_seed(0)
    net = GatedBlend(ModelConfig(blend="gated", max_dim=2, width=32, depth=2, heads=4, mixture_penalties=(), t_mixture_penalties=(), gate_context_features=False))
    scott = list(net.config.kde_factors).index(1.0)
    with torch.no_grad():
        for table in (net.gate_base, net.logp_gate_base):
            table[2, scott] = 1.0
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 2, generator=g, dtype=torch.float64) @ torch.tensor([[1.5, 0.4], [0.0, 0.5]], dtype=torch.float64)
    y = 1.5 * torch.randn(50, 2, generator=g, dtype=torch.float64)  # near the data: no clamped log-density
    fitted = Estimator(net).fit(x)
    xc = x - x.mean(0)
    cov = xc.T @ xc / x.shape[0]
    h = scott_factor(x.shape[0], 2)
    for sigma in (0.0, 0.5, 5.0):
        kernel = h * h * cov + sigma**2 * torch.eye(2, dtype=torch.float64)
        comp = torch.distributions.MultivariateNormal(x, covariance_matrix=kernel.expand(x.shape[0], 2, 2))
        yy = y.clone().requires_grad_(True)
        exact_lp = torch.logsumexp(comp.log_prob(yy[:, None]), -1) - np.log(x.shape[0])
        (exact_s,) = torch.autograd.grad(exact_lp.sum(), yy)
        est = fitted.convolved(sigma) if sigma else fitted
        lp, s = est.log_density_and_score(y)
        torch.testing.assert_close(lp, exact_lp.detach(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s, exact_s, rtol=1e-4, atol=1e-4 * (1 + sigma**-2 if sigma else 1))
