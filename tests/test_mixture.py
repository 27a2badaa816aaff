"""The EM mixture skip: closed-form checks against known mixtures."""

import math

import pytest
import torch

from disco_plug.gmm import GaussianMixture
from disco_plug.mixture import (GAUSSIAN_DOF, convolve_mixture, fit_mixture, fit_mixtures,
                                 mixture_log_density_and_score)

TWO = GaussianMixture.from_components(
    [0.4, 0.6], torch.tensor([[-3.0, 0.0], [3.0, 1.0]], dtype=torch.float64), [[0.5, 0.3], [0.8, 0.4]])


def test_recovers_two_separated_components():
    n = 4000
    x = TWO.sample(n, generator=torch.Generator().manual_seed(0))  # (1, n, 2)
    mix = fit_mixture(x)
    assert int(mix.components) == 2
    order = torch.argsort(mix.means[0, :2, 0])
    means = mix.means[0, order]
    # Each mean is estimated from >= 1600 points with sd <= 0.9: 5 standard errors is < 0.12.
    torch.testing.assert_close(means, TWO.means[0].to(means.dtype), atol=0.12, rtol=0)
    weights = torch.softmax(mix.log_norm[0, order] + torch.log(torch.diagonal(mix.prec_chol[0, order], dim1=-2,
                                                                               dim2=-1)).sum(-1).neg(), -1)
    # Binomial standard error of a weight at n = 4000 is 0.008: 5 of them.
    torch.testing.assert_close(weights, torch.tensor([0.4, 0.6], dtype=weights.dtype), atol=0.04, rtol=0)


def test_score_is_the_gradient_of_the_log_density():
    x = TWO.sample(500, generator=torch.Generator().manual_seed(1))
    mix = fit_mixture(x)
    y = torch.randn(1, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    log_p, score = mixture_log_density_and_score(mix, y)
    (grad,) = torch.autograd.grad(log_p.sum(), y)
    torch.testing.assert_close(score, grad, atol=1e-10, rtol=1e-10)


def test_density_integrates_to_one():
    mix = fit_mixture(TWO.sample(800, generator=torch.Generator().manual_seed(3)))
    axis = torch.linspace(-10.0, 10.0, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(1, -1, 2)
    mass = mixture_log_density_and_score(mix, grid)[0].exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(float(mass) - 1.0) < 1e-4


def test_bic_picks_one_component_for_gaussian_data():
    x = torch.randn(4, 2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert fit_mixture(x).components.tolist() == [1, 1, 1, 1]


def test_smaller_penalty_never_picks_fewer_components():
    x = GaussianMixture.from_components([0.2, 0.3, 0.5], torch.tensor([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]),
                                        [[0.6, 0.6], [0.6, 0.6], [0.6, 0.6]]).sample(
        300, generator=torch.Generator().manual_seed(5))
    bic, loose = fit_mixtures(x, (1.0, 0.3))
    assert int(loose.components) >= int(bic.components) >= 1


def test_order_of_the_points_does_not_matter():
    x = TWO.sample(600, generator=torch.Generator().manual_seed(6))
    perm = torch.randperm(600, generator=torch.Generator().manual_seed(7))
    y = torch.linspace(-4, 4, 30, dtype=torch.float64)[:, None].expand(30, 2)[None].contiguous()
    a = mixture_log_density_and_score(fit_mixture(x), y)
    b = mixture_log_density_and_score(fit_mixture(x[:, perm]), y)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("n,d", [(5, 4), (30, 10)])
def test_few_points_in_high_dimension_stay_finite(n, d):
    x = torch.randn(2, n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    mix = fit_mixture(x)
    assert bool((mix.components <= max(1, n // (d + 1))).all())
    log_p, score = mixture_log_density_and_score(mix, 10 * x)
    assert torch.isfinite(log_p).all() and torch.isfinite(score).all()
    assert math.isfinite(float(log_p.sum()))


def _student_t(n: int, d: int, dof: float, seed: int) -> torch.Tensor:
    """n draws (1, n, d) of a standard multivariate Student-t: normal / sqrt(chi2_dof / dof)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, n, d, dtype=torch.float64, generator=g)
    chi2 = 2 * torch._standard_gamma(torch.full((1, n, 1), dof / 2, dtype=torch.float64), generator=g)
    return z / (chi2 / dof).sqrt()


def test_heavy_tailed_fit_finds_student_t_tails():
    mix = fit_mixture(_student_t(4000, 2, 3.0, 9), heavy_tails=True)
    assert int(mix.components) == 1
    # nu = 3 on a grid (1.5, 2, 3, 5, ...): at n = 4000 the likelihood separates the neighbours.
    assert float(mix.dof[0, 0]) == 3.0


def test_heavy_tailed_fit_keeps_gaussian_data_gaussian():
    x = torch.randn(2, 4000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    mix = fit_mixture(x, heavy_tails=True)
    assert mix.components.tolist() == [1, 1]
    assert bool((mix.dof[:, 0] == GAUSSIAN_DOF).all())


def test_student_t_components_score_and_normalization():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    mix = fit_mixture(_student_t(1500, 1, 2.0, 11), heavy_tails=True)
    assert float(mix.dof[0, :1].min()) < GAUSSIAN_DOF
    y = torch.linspace(-30, 30, 61, dtype=torch.float64)[None, :, None].requires_grad_(True)
    log_p, score = mixture_log_density_and_score(mix, y)
    (grad,) = torch.autograd.grad(log_p.sum(), y)
    torch.testing.assert_close(score, grad, atol=1e-10, rtol=1e-10)

    def density(t: float) -> float:
        return float(mixture_log_density_and_score(mix, torch.tensor([[[t]]], dtype=torch.float64))[0].exp())
    mass = sum(scipy_integrate.quad(density, a, b, limit=200)[0]
               for a, b in ((-math.inf, -50), (-50, 50), (50, math.inf)))
    assert abs(mass - 1.0) < 1e-6


def test_distance_to_the_nearest_component():
    mix = fit_mixture(TWO.sample(2000, generator=torch.Generator().manual_seed(12)))
    y = mix.means[:, :2]  # at the fitted means the distance to the nearest component is zero
    _, _, delta = mixture_log_density_and_score(mix, y, with_distance=True)
    torch.testing.assert_close(delta, torch.zeros_like(delta), atol=1e-12, rtol=0)


def test_convolving_a_gaussian_mixture_is_exact():
    """Fit, then map x -> x @ M and add N(0, N): the result is the mixture with means mu @ M and
    covariances M^T C M + N, checked against GaussianMixture.convolve (M = I, N = s^2 I) and against the
    closed form for a general M and N."""
    x = TWO.sample(3000, generator=torch.Generator().manual_seed(4))
    mix = fit_mixture(x)
    y = torch.randn(1, 7, 2, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)[None]
    same = convolve_mixture(mix, eye, torch.zeros_like(eye))
    for a, b in zip(mixture_log_density_and_score(same, y), mixture_log_density_and_score(mix, y)):
        torch.testing.assert_close(a, b)
    m = torch.tensor([[[2.0, 0.3], [0.0, 0.5]]], dtype=torch.float64)
    noise = torch.tensor([[[0.4, 0.1], [0.1, 0.3]]], dtype=torch.float64)
    out = convolve_mixture(mix, m, noise)
    k = int(mix.components)
    prec = mix.prec_chol[0, :k] @ mix.prec_chol[0, :k].transpose(-1, -2)
    cov = m[0].T @ torch.linalg.inv(prec) @ m[0] + noise[0]
    log_w = mix.log_norm[0, :k] - torch.log(torch.diagonal(mix.prec_chol[0, :k], dim1=-2, dim2=-1)).sum(-1) \
        + math.log(2 * math.pi)  # d / 2 log(2 pi) with d = 2
    exact = torch.distributions.MultivariateNormal(mix.means[0, :k] @ m[0], covariance_matrix=cov)
    expected = torch.logsumexp(exact.log_prob(y[0, :, None]) + log_w, -1)
    torch.testing.assert_close(mixture_log_density_and_score(out, y)[0][0], expected)


def _covariances(mix, k):
    prec = mix.prec_chol[0, :k] @ mix.prec_chol[0, :k].transpose(-1, -2)
    return torch.linalg.inv(prec)


@pytest.mark.parametrize("rotate", [False, True])
def test_diagonal_family_is_chosen_where_the_axes_are_independent(rotate):
    """30-D two-component mixtures, whitened as the network sees them: with components diagonal on the
    data's axes, BIC keeps the diagonal family (covariances diagonal in the data_axes coordinates, and a
    much better fit than the full family alone); with a random rotation, the full family."""
    from disco_plug.gmm import random_gmm
    from disco_plug.whitening import fit_whitening
    g = torch.Generator().manual_seed(11)
    gmm = random_gmm(1, 30, generator=g, dtype=torch.float64, components=(2, 2), rotate=rotate)
    x, y = gmm.sample(1500, generator=g), gmm.sample(300, generator=g)
    w = fit_whitening(x)
    axes = w.data_axes()
    both = fit_mixtures(w.apply(x), axes=axes)[0]
    full = fit_mixtures(w.apply(x))[0]
    k = int(both.components)
    cov_z = axes[0].T @ _covariances(both, k) @ axes[0]  # (k, d, d) in the data's standardized axes
    off = cov_z - torch.diag_embed(torch.diagonal(cov_z, dim1=-2, dim2=-1))
    true = gmm.score(y)
    err = {name: float(((w.score_back(mixture_log_density_and_score(m, w.apply(y))[1]) - true) ** 2).sum()
                       / (true**2).sum()) for name, m in (("both", both), ("full", full))}
    if rotate:
        assert float(off.abs().max()) > 0.05
        assert err["both"] == pytest.approx(err["full"])
    else:
        assert float(off.abs().max()) < 1e-9 and k == 2
        assert err["both"] < 0.2 * err["full"], err


def test_data_axes_give_the_standardized_coordinates():
    from disco_plug.whitening import fit_whitening
    x = torch.randn(1, 500, 3, dtype=torch.float64) @ torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]],
                                                                    dtype=torch.float64) + 4.0
    w = fit_whitening(x, eps=0.0)
    z = w.apply(x) @ w.data_axes()
    torch.testing.assert_close(z, (x - x.mean(1, keepdim=True)) / x.std(1, correction=0, keepdim=True))
