"""Every density object alone, without a network: the score is the gradient of the log-density, the
density integrates to one, `convolve` is the density of x @ M + e, and `sample` draws from it."""

import math

import pytest
import torch

from disco_plug.densities import Gaussian, KernelDensity, MixtureDensity, StackedDensity
from disco_plug.densities.mixture import GAUSSIAN_DOF, Mixture, precision_form

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixture(d: int, seed: int) -> MixtureDensity:
    """Two components in d dimensions, one Gaussian, one Student-t with nu = 6 (finite fourth moments)."""
    g = _gen(seed)
    means = torch.randn(1, 2, d, generator=g, dtype=F64) * 1.5
    a = torch.randn(1, 2, d, d, generator=g, dtype=F64) * 0.4
    cov = a @ a.transpose(-1, -2) + 0.3 * torch.eye(d, dtype=F64)
    dof = torch.tensor([[GAUSSIAN_DOF, 6.0]], dtype=F64)
    prec_chol, log_norm = precision_form(torch.log(torch.tensor([[0.3, 0.7]], dtype=F64)), cov, dof)
    return MixtureDensity(Mixture(log_norm, means, prec_chol, dof))


def _kde(d: int, seed: int, n: int = 40) -> KernelDensity:
    return KernelDensity(torch.randn(1, n, d, generator=_gen(seed), dtype=F64), 0.45)


def _gaussian(d: int, seed: int) -> Gaussian:
    g = _gen(seed)
    a = torch.randn(1, d, d, generator=g, dtype=F64) * 0.5
    return Gaussian.from_covariance(torch.randn(1, d, generator=g, dtype=F64), a @ a.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=F64))


def _stacked(d: int, seed: int) -> StackedDensity:
    kde = _kde(d, seed)
    parts = [Gaussian.standard(1, d, kde.centres), kde, KernelDensity(kde.centres, 0.9), _mixture(d, seed + 1)]
    return StackedDensity(torch.tensor([[0.1, 0.3, 0.2, 0.4]], dtype=F64), parts)


def _noise(d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A map M (1, d, d) and a noise covariance N (1, d, d)."""
    g = _gen(seed)
    m = torch.eye(d, dtype=F64) + 0.3 * torch.randn(1, d, d, generator=g, dtype=F64)
    b = torch.randn(1, d, d, generator=g, dtype=F64) * 0.3
    return m, b @ b.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=F64)


BUILDERS = {"gaussian": _gaussian, "standard": lambda d, s: Gaussian.standard(1, d, torch.zeros(1, dtype=F64)),
            "kde": _kde, "mixture": _mixture, "stacked": _stacked,
            "kde convolved": lambda d, s: _kde(d, s).convolve(_noise(d, s)[1], _noise(d, s)[0]),
            "stacked convolved": lambda d, s: _stacked(d, s).convolve(0.2)}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("d", [1, 3])
def test_score_is_the_gradient_of_the_log_density(kind, d):
    """Autograd's gradient of log p against the score, at points near and far (10 sd) from the mass."""
    dens = BUILDERS[kind](d, 3)
    y = torch.randn(1, 30, d, generator=_gen(5), dtype=F64) * torch.tensor([1.0] * 20 + [10.0] * 10, dtype=F64)[:, None]
    y.requires_grad_(True)
    log_p, score = dens.log_density_and_score(y)
    (grad,) = torch.autograd.grad(log_p.sum(), y)
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(score, grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_density_integrates_to_one(kind):
    """A 2-D density on a 401 x 401 grid over [-12, 12]^2 (a Riemann sum; the mass outside the box, a
    Student-t nu = 6 tail, is below 1e-3)."""
    dens = BUILDERS[kind](2, 7)
    t = torch.linspace(-12, 12, 401, dtype=F64)
    grid = torch.cartesian_prod(t, t)[None]
    total = float(dens.log_density_and_score(grid)[0].exp().sum() * (t[1] - t[0]) ** 2)
    assert abs(total - 1.0) < 2e-3, total


@pytest.mark.parametrize("kind", ["gaussian", "kde", "mixture", "stacked"])
def test_sample_moments_match_the_density(kind):
    """Mean and variances of 20000 draws against those of the density (from a fine grid, d = 2), within
    5 standard errors of a sample mean, sqrt(var / num), and of a sample variance, sqrt((m4 - var^2) / num)
    with m4 the density's fourth central moment."""
    dens = BUILDERS[kind](2, 11)
    num = 20000
    x = dens.sample(num, _gen(13))[0]
    assert x.shape == (num, 2)
    t = torch.linspace(-30, 30, 1201, dtype=F64)
    grid = torch.cartesian_prod(t, t)
    p = dens.log_density_and_score(grid[None])[0][0].exp()
    p = p / p.sum()
    mean = (p[:, None] * grid).sum(0)
    cov = ((grid - mean).T * p) @ (grid - mean)
    var = torch.diagonal(cov)
    m4 = (p[:, None] * (grid - mean) ** 4).sum(0)
    assert ((x.mean(0) - mean).abs() <= 5 * (var / num).sqrt()).all(), (x.mean(0), mean)
    assert ((x.var(0) - var).abs() <= 5 * ((m4 - var**2) / num).sqrt()).all(), (x.var(0), var)


def test_gaussian_convolve_is_exact():
    """N(mu, S) moved by M and noised by N is N(mu M, M^T S M + N), also from the standard one."""
    m, noise = _noise(3, 2)
    g = _gaussian(3, 4)
    out = g.convolve(noise, m)
    torch.testing.assert_close(out.mean, (g.mean[:, None] @ m)[:, 0])
    torch.testing.assert_close(out.covariance, m.transpose(-1, -2) @ g.covariance @ m + noise)
    std = Gaussian.standard(1, 3, m).convolve(noise, m)
    torch.testing.assert_close(std.covariance, m.transpose(-1, -2) @ m + noise)


def test_kde_convolve_is_the_kde_with_the_moved_and_noised_kernel():
    """KDE with kernel h^2 I on centres c, moved by M and noised by N (which share their eigenvectors, as
    the whitened frames of a set and of its noised distribution do), equals the equal-weight mixture of
    N(c_i M, h^2 M^T M + N), written out with torch.distributions; and a second convolve adds to the first."""
    d = 3
    kde = _kde(d, 9)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=_gen(1), dtype=F64))
    m = (q * torch.tensor([1.5, 0.7, 1.1], dtype=F64)) @ q.T  # symmetric: M^T M shares q with N
    noise = (q * torch.tensor([0.2, 0.05, 0.4], dtype=F64)) @ q.T
    y = torch.randn(1, 25, d, generator=_gen(2), dtype=F64) * 2
    h = kde.bandwidth

    def explicit(centres, cov):
        comp = torch.distributions.MultivariateNormal(centres[0], covariance_matrix=cov.expand(centres.shape[1], d, d))
        return torch.logsumexp(comp.log_prob(y[0][:, None]), -1) - math.log(centres.shape[1])

    once = kde.convolve(noise[None], m[None])
    torch.testing.assert_close(once.log_density(y)[0], explicit(kde.centres @ m, h * h * m.T @ m + noise))
    twice = once.convolve(noise[None])
    torch.testing.assert_close(twice.log_density(y)[0], explicit(kde.centres @ m, h * h * m.T @ m + 2 * noise))


def test_mixture_convolve_of_gaussian_components_is_exact():
    """A Gaussian mixture noised by N: each component's covariance grows by N (checked against the
    explicit mixture at random points)."""
    mix = _mixture(2, 21)
    gaussian = Mixture(mix.mixture.log_norm[:, :1], mix.mixture.means[:, :1], mix.mixture.prec_chol[:, :1],
                       mix.mixture.dof[:, :1])
    dens = MixtureDensity(gaussian)
    noise = torch.tensor([[[0.3, 0.1], [0.1, 0.2]]], dtype=F64)
    precision = gaussian.prec_chol[0, 0] @ gaussian.prec_chol[0, 0].T
    cov = torch.linalg.inv(precision) + noise[0]
    y = torch.randn(1, 20, 2, generator=_gen(3), dtype=F64)
    want = torch.distributions.MultivariateNormal(gaussian.means[0, 0], covariance_matrix=cov).log_prob(y[0])
    # the single component's weight is 0.3: its log-density is offset by log 0.3 (the tuple keeps the weight)
    torch.testing.assert_close(dens.convolve(noise).log_density(y)[0], want + math.log(0.3))


def test_stacked_density_pools_its_components_and_skips_unused_ones():
    """log p = log sum_k w_k p_k, and a component with weight zero everywhere is never evaluated."""
    dens = _stacked(2, 5)
    y = torch.randn(1, 15, 2, generator=_gen(8), dtype=F64)
    parts = torch.stack([c.log_density(y) for c in dens.components], -1)
    want = torch.logsumexp(parts + torch.log(dens.weights)[:, None], -1)
    torch.testing.assert_close(dens.log_density(y), want)

    class Exploding(Gaussian):
        def log_density_and_score(self, y):
            raise AssertionError("an unused component was evaluated")

    unused = StackedDensity(torch.tensor([[0.0, 1.0]], dtype=F64), [Exploding.standard(1, 2, y), dens.components[1]])
    torch.testing.assert_close(unused.log_density(y), dens.components[1].log_density(y))
    with pytest.raises(ValueError, match="do not match"):
        StackedDensity(torch.ones(1, 3, dtype=F64) / 3, dens.components[:2])


def test_reprs_name_the_parts():
    text = repr(_stacked(2, 5))
    assert "Gaussian(d=2, N(0, I))" in text and "KernelDensity(n=40" in text and "MixtureDensity(K=2, d=2, 1 Student-t)" in text


def test_exact_test_densities_speak_the_adapters_protocol():
    """The closed-form targets and the Gaussian-mixture oracle answer log_density_and_score like a fitted
    estimate (disco_plug.integrations.Density), with the score their log-density's gradient (central
    differences, step 1e-6: agreement to 1e-5 relative)."""
    from disco_plug.gmm import random_gmm
    from disco_plug.integrations import Density as Protocol
    from disco_plug.targets import Banana, BetaProduct, Bimodal, Funnel, Laplace, StudentT

    gmm = random_gmm(1, 3, generator=_gen(4), dtype=F64)
    for target in (Banana(), Funnel(), BetaProduct(3), Bimodal(4), Laplace(2), StudentT(3)):
        assert isinstance(target, Protocol)
        y = target.sample(16, generator=_gen(6))
        log_p, score = target.log_density_and_score(y)
        step = 1e-6 * torch.eye(target.dim, dtype=F64)
        grad = torch.stack([(target.log_density(y + e) - target.log_density(y - e)) / 2e-6 for e in step], -1)
        torch.testing.assert_close(score, grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(log_p, target.log_density(y))
    y = torch.randn(1, 5, 3, generator=_gen(7), dtype=F64)
    torch.testing.assert_close(gmm.log_density_and_score(y)[0], gmm.log_prob(y))


def test_kdes_of_one_base_in_one_pass_equal_each_alone():
    """A variance-corrected KDE declared on the plain KDE's centres (base, scale) is evaluated in the same
    pass at scaled queries (isotropic_kde's query_scales); its values equal those of the same KDE alone,
    also leave-one-out, and repeated calls reuse the prepared keys with the same result."""
    x = torch.randn(1, 60, 3, generator=_gen(12), dtype=F64)
    s = 0.8
    plain, shrunk = KernelDensity(x, 0.5), KernelDensity(x * s, 0.4, shrunk=True, base=x, scale=s)
    alone = KernelDensity(x * s, 0.4, shrunk=True)
    y = torch.randn(1, 30, 3, generator=_gen(13), dtype=F64) * 2
    for _ in range(2):
        log_p, score = KernelDensity.evaluate_together([plain, shrunk], y)
        torch.testing.assert_close(log_p[..., 1], alone.log_density(y), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(score[..., 1, :], alone.score(y), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(log_p[..., 0], KernelDensity(x, 0.5).log_density(y), rtol=1e-12, atol=1e-12)
    exclude = (torch.arange(30)[:, None] == torch.arange(60)[None])[None]
    log_p, _ = KernelDensity.evaluate_together([plain, shrunk], x[:, :30], exclude=exclude)
    torch.testing.assert_close(log_p[..., 1], alone.log_density_and_score(x[:, :30], exclude=exclude)[0],
                               rtol=1e-12, atol=1e-12)


def test_prepared_kde_tensors_are_kept_only_while_small(monkeypatch):
    """A KDE group keeps its augmented keys between calls, except beyond the size limit, where the values
    are the same and nothing is kept."""
    from disco_plug.densities import kde as kde_module

    x = torch.randn(1, 50, 2, generator=_gen(14), dtype=F64)
    y = torch.randn(1, 7, 2, generator=_gen(15), dtype=F64)
    small = KernelDensity(x, 0.5)
    want = small.log_density(y)
    assert any("keys" in c for c in small._prepared.values())
    monkeypatch.setattr(kde_module, "_CACHE_NUMBERS", 10)
    large = KernelDensity(x, 0.5)
    torch.testing.assert_close(large.log_density(y), want, rtol=0, atol=0)
    assert not any(c for c in large._prepared.values())
