"""ClusterKernelDensity: a finite Gaussian mixture with one kernel covariance per cluster, checked against
torch.distributions, autograd, a grid integral, exact convolution and its own draws."""

import math

import pytest
import torch

from disco_plug.densities import ClusterKernelDensity
from disco_plug.fit.kmeans import cluster_covariances, kmeans


def _clustered(generator, b=2, k=4):
    blob = torch.randn(b, 300, 2, generator=generator, dtype=torch.float64) * 0.3 + 2
    line = torch.randn(b, 200, 2, generator=generator, dtype=torch.float64) * torch.tensor([1.0, 0.1],
                                                                                            dtype=torch.float64) - 1
    x = torch.cat([blob, line], 1)
    labels = kmeans(x, k)
    cov = cluster_covariances(x, labels, k, prior=4.0, floor=1e-4)
    return x, ClusterKernelDensity.from_clusters(x, labels, cov)


def _brute_log_density(density, y):
    out = []
    for b in range(density.batch):
        kernels = density.kernels[b, density.labels[b]]  # (n, d, d)
        comps = torch.distributions.MultivariateNormal(density.centres[b], covariance_matrix=kernels)
        out.append(torch.logsumexp(comps.log_prob(y[b][:, None]), -1) - math.log(density.centres.shape[1]))
    return torch.stack(out)


def test_log_density_and_score_match_the_mixture_of_kernels(generator):
    _, density = _clustered(generator)
    y = torch.randn(2, 9, 2, generator=generator, dtype=torch.float64) * 3  # near and far from the data
    log_p, score = density.log_density_and_score(y)
    torch.testing.assert_close(log_p, _brute_log_density(density, y), rtol=1e-10, atol=1e-10)
    y_grad = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_brute_log_density(density, y_grad).sum(), y_grad)
    torch.testing.assert_close(score, grad, rtol=1e-8, atol=1e-10)


def test_it_integrates_to_one_and_so_does_its_convolution(generator):
    _, density = _clustered(generator)
    axis = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(1, -1, 2).expand(2, -1, -1)
    cell = (16 / 400) ** 2
    for dens in (density, density.convolve(0.5)):
        torch.testing.assert_close(dens.log_density(grid).exp().sum(-1) * cell,
                                   torch.ones(2, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_convolution_is_exact(generator):
    _, density = _clustered(generator)
    matrix = torch.tensor([[2.0, 0.3], [0.0, 0.5]], dtype=torch.float64).expand(2, -1, -1)
    moved = density.convolve(0.1, matrix)
    y = torch.randn(2, 5, 2, generator=generator, dtype=torch.float64)
    # x @ M + e with x ~ N(c, G) is N(c M, M^T G M + 0.1 I): the same mixture of moved kernels.
    m = matrix[0]
    expected = []
    for b in range(2):
        kernels = m.T @ density.kernels[b, density.labels[b]] @ m + 0.1 * torch.eye(2, dtype=torch.float64)
        comps = torch.distributions.MultivariateNormal(density.centres[b] @ m, covariance_matrix=kernels)
        expected.append(torch.logsumexp(comps.log_prob(y[b][:, None]), -1) - math.log(500))
    torch.testing.assert_close(moved.log_density(y), torch.stack(expected), rtol=1e-10, atol=1e-10)


def test_leave_one_out_drops_exactly_one_kernel(generator):
    _, density = _clustered(generator)
    y = density.centres[:, 3:4].clone()
    exclude = torch.zeros(2, 1, 500, dtype=torch.bool)
    exclude[:, :, 3] = True
    kernels = density.kernels[0, density.labels[0]]
    own = torch.distributions.MultivariateNormal(density.centres[0, 3], covariance_matrix=kernels[3]).log_prob(y[0, 0])
    full = density.log_density(y)[0, 0]
    left = density.log_density_and_score(y, exclude=exclude)[0][0, 0]
    # p = p_without + own / n
    torch.testing.assert_close(torch.logaddexp(left, own - math.log(500)), full, rtol=1e-12, atol=1e-12)


def test_draws_have_the_density_moments(generator):
    _, density = _clustered(generator, b=1)
    draws = density.sample(40000, generator=torch.Generator().manual_seed(1))[0]
    centres, kernels = density.centres[0], density.kernels[0, density.labels[0]]
    mean = centres.mean(0)
    cov = torch.cov(centres.T, correction=0) + kernels.mean(0)
    se = (torch.diagonal(cov) / 40000).sqrt()
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()
    # the variance of each coordinate within 5 standard errors (sd of a sample variance ~ var sqrt(2 / N) for
    # near-normal margins; a mixture's is larger, so allow 10)
    assert ((draws.var(0) - torch.diagonal(cov)).abs() < 10 * torch.diagonal(cov) * math.sqrt(2 / 40000)).all()


def test_from_clusters_keeps_each_clusters_spread(generator):
    x, density = _clustered(generator, b=1)
    for j in density.labels.unique().tolist():
        mine = density.labels[0] == j
        members = x[0, mine]
        if len(members) < 20:
            continue
        # centres shrunk by s and kernel (h s)^2 S: total covariance s^2 (cov + h^2 S) ~ cov when S ~ cov
        spread = torch.cov(density.centres[0, mine].T, correction=0) + density.kernels[0, j]
        own = float(torch.diagonal(torch.cov(members.T, correction=0)).sum())
        assert float(torch.diagonal(spread).sum()) == pytest.approx(own, rel=0.35)
