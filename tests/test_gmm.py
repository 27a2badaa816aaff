import math

import numpy as np
import pytest
import torch

from disco_plug.gmm import GaussianMixture, random_gmm, random_rotation


def test_score_is_autograd_of_log_prob(generator):
    gmm = random_gmm(3, 4, generator=generator, dtype=torch.float64)
    y = gmm.sample(50, generator=generator).requires_grad_(True)
    log_p, score = gmm.log_prob_and_score(y)
    (grad,) = torch.autograd.grad(log_p.sum(), y)
    assert torch.allclose(score, grad, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_density_integrates_to_one(dim, generator):
    gmm = random_gmm(2, dim, generator=generator, dtype=torch.float64)
    lim, k = 9.0, (4001 if dim == 1 else 801)
    axis = torch.linspace(-lim, lim, k, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[axis] * dim, indexing="ij"), -1).reshape(-1, dim)
    cell = (axis[1] - axis[0]).item() ** dim
    mass = gmm.log_prob(grid.expand(2, -1, -1)).exp().sum(-1) * cell
    # means lie in [-3, 3] with variances <= 1: the mass outside [-9, 9]^d is < 1e-8.
    assert torch.allclose(mass, torch.ones(2, dtype=torch.float64), atol=1e-6)


def test_rotation_is_orthogonal(generator):
    r = random_rotation(5, 6, generator=generator, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64).expand(5, 6, 6)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=1e-12)


def test_sample_moments_match(generator):
    gmm = GaussianMixture.from_components([0.3, 0.7], torch.tensor([[-2.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                                         [[0.5, 0.2], [1.0, 0.3]])
    n = 200_000
    x = gmm.sample(n, generator=generator)[0]
    mean = 0.3 * np.array([-2.0, 0.0]) + 0.7 * np.array([1.0, 1.0])
    second = 0.3 * (np.array([0.5, 0.2]) + np.array([4.0, 0.0])) + 0.7 * (np.array([1.0, 0.3]) + 1.0)
    sd = np.sqrt(second - mean**2)
    # 5 standard errors of a sample mean: fails with probability < 1e-6 per coordinate.
    assert np.all(np.abs(x.mean(0).numpy() - mean) < 5 * sd / math.sqrt(n))


def test_convolve_matches_monte_carlo_density(generator):
    gmm = random_gmm(1, 2, generator=generator, dtype=torch.float64)
    sigma = 0.7
    y = torch.zeros(1, 1, 2, dtype=torch.float64)
    eps = torch.randn(200_000, 2, generator=generator, dtype=torch.float64)
    mc = gmm.log_prob((y[0] - sigma * eps)[None]).exp()
    exact = gmm.convolve(sigma).log_prob(y).exp().item()
    assert abs(mc.mean().item() - exact) < 5 * mc.std().item() / math.sqrt(len(eps))


def test_single_mixture_accepts_any_leading_shape():
    gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3))
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    assert torch.allclose(gmm.score_fn(x, 0.0), -x)
    assert torch.allclose(gmm.score_fn(x, 1.0), -x / 2)


def test_bad_shapes_raise():
    gmm = random_gmm(2, 3)
    with pytest.raises(ValueError, match="dimension"):
        gmm.log_prob(torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="components"):
        random_gmm(1, 2, components=(0, 3))


def test_sample_returns_the_components_it_drew_from():
    """return_components gives the same points (same draws) and each point's component: labelled
    points sit at their component's mean within a few of its standard deviations."""
    gmm = random_gmm(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = gmm.sample(400, generator=torch.Generator().manual_seed(4))
    x2, comp = gmm.sample(400, generator=torch.Generator().manual_seed(4), return_components=True)
    torch.testing.assert_close(x, x2, atol=0.0, rtol=0.0)
    assert comp.shape == (2, 400) and bool(torch.isfinite(gmm.log_weights.gather(1, comp)).all())
    z = ((x - gmm.means.gather(1, comp[..., None].expand(-1, -1, 3))) @ gmm.rotation) / gmm.variances.gather(
        1, comp[..., None].expand(-1, -1, 3)).sqrt()  # standardized in each point's own component
    assert float(z.abs().max()) < 5.0  # 2400 standard normals: P(any > 5) < 2e-3
