import numpy as np
import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats")

from disco_plug.densities.kde import GaussianKDE, isotropic_kde, scott_factor, silverman_factor  # noqa: E402


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.3])
@pytest.mark.parametrize("dim", [1, 3])
def test_matches_scipy_gaussian_kde(bandwidth, dim, generator):
    data = torch.randn(400, dim, generator=generator, dtype=torch.float64) @ torch.eye(dim, dtype=torch.float64) * 2 + 1
    queries = torch.randn(50, dim, generator=generator, dtype=torch.float64)
    ours = GaussianKDE(data, bandwidth).log_density(queries).numpy()
    ref = scipy_stats.gaussian_kde(data.numpy().T, bw_method=bandwidth).logpdf(queries.numpy().T)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_score_is_gradient_of_log_density(generator):
    data = torch.randn(300, 2, generator=generator, dtype=torch.float64)
    kde = GaussianKDE(data)
    y = torch.randn(20, 2, generator=generator, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(kde.log_density(y).sum(), y)
    torch.testing.assert_close(kde.score(y.detach()), grad, rtol=1e-10, atol=1e-10)


def test_chunking_gives_same_result(generator, monkeypatch):
    import disco_plug.densities.kde as kde_module

    ctx = torch.randn(1, 300, 2, generator=generator, dtype=torch.float64)
    q = torch.randn(1, 97, 2, generator=generator, dtype=torch.float64)
    full = isotropic_kde(q, ctx, 0.4)
    monkeypatch.setattr(kde_module, "_CHUNK_ELEMENTS", 1000)  # forces 4 chunks of queries
    chunked = isotropic_kde(q, ctx, 0.4)
    torch.testing.assert_close(full, chunked)


def test_debiased_kde_reduces_bias_on_gaussian(generator):
    # For N(0, I) data the true score is -x; debiasing with it should cut the density error.
    data = torch.randn(2000, 2, generator=generator, dtype=torch.float64)
    q = torch.randn(500, 2, generator=generator, dtype=torch.float64)
    true = -0.5 * (q**2).sum(-1) - np.log(2 * np.pi)
    plain = GaussianKDE(data, 0.6).log_density(q)
    debiased = GaussianKDE.debiased(data, -data, 0.6).log_density(q)
    assert ((debiased - true) ** 2).mean() < 0.5 * ((plain - true) ** 2).mean()


def test_bandwidth_rules():
    assert scott_factor(1024, 2) == pytest.approx(1024 ** (-1 / 6))
    assert silverman_factor(1024, 2) == pytest.approx((1024 * 4 / 4) ** (-1 / 6))


def test_bad_bandwidth_and_singular_data():
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianKDE(torch.randn(10, 2), "magic")
    with pytest.raises(ValueError, match="singular"):
        GaussianKDE(torch.ones(10, 2, dtype=torch.float64))
