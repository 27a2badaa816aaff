"""disco_plug.targets.LandauBKW: the BKW solution solves the Landau equation; score, density and draws agree."""

import math

import pytest
import torch

from disco_plug.targets import LandauBKW


@pytest.mark.parametrize("d", [2, 3])
def test_bkw_solves_the_landau_equation(d):
    """df/dt = div(D grad f + C (d - 1) v f) with D(v) = C ((|v|^2 + (d - 1)) I - v v^T): the Maxwell-molecule
    operator for a density of mean 0 and unit temperature, checked by autograd against a time derivative."""
    bkw = LandauBKW(d)
    t = bkw.t0 + 1.3
    v = torch.randn(64, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64) * 1.5
    v.requires_grad_(True)
    f = bkw.log_density(t, v).exp()
    grad = torch.autograd.grad(f.sum(), v, create_graph=True)[0]
    r2 = (v * v).sum(-1, keepdim=True)
    flux = bkw.C * ((r2 + d - 1) * grad - v * (v * grad).sum(-1, keepdim=True)) + bkw.C * (d - 1) * v * f[:, None]
    div = sum(torch.autograd.grad(flux[:, i].sum(), v, retain_graph=True)[0][:, i] for i in range(d))
    h = 1e-5
    with torch.no_grad():
        dfdt = (bkw.log_density(t + h, v).exp() - bkw.log_density(t - h, v).exp()) / (2 * h)
    torch.testing.assert_close(div.detach(), dfdt, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("d", [2, 3])
def test_bkw_score_density_and_draws_agree(d):
    bkw = LandauBKW(d)
    t = bkw.t0 + 2.0
    v = torch.randn(32, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64).requires_grad_(True)
    grad = torch.autograd.grad(bkw.log_density(t, v).sum(), v)[0]
    torch.testing.assert_close(bkw.score(t, v.detach()), grad)
    n = 200_000
    x = bkw.sample(t, n, torch.Generator().manual_seed(1))
    r2 = (x * x).sum(1)
    assert abs(float(r2.mean()) - d) < 4 * float(r2.std()) / math.sqrt(n)  # unit temperature
    m4 = r2.square()
    assert abs(float(m4.mean()) - bkw.fourth_moment(t)) < 4 * float(m4.std()) / math.sqrt(n)


@pytest.mark.parametrize("d", [2, 3])
def test_bkw_entropy_matches_exact_draws_and_grows(d):
    """entropy(t) (radial quadrature) against -mean log f of 100000 exact draws, within 4 standard errors,
    at t0 (where f vanishes at the origin in d = 2) and later; and it grows with t (the H-theorem)."""
    bkw = LandauBKW(d)
    times = [bkw.t0, bkw.t0 + 1.0, bkw.t0 + 4.0]
    for i, t in enumerate(times):
        log_f = bkw.log_density(t, bkw.sample(t, 100_000, torch.Generator().manual_seed(3 + i)))
        assert abs(bkw.entropy(t) + float(log_f.mean())) < 4 * float(log_f.std()) / math.sqrt(100_000)
    values = [bkw.entropy(t) for t in times]
    assert values == sorted(values) and values[0] < values[-1]


def test_bkw_refuses_other_dimensions():
    with pytest.raises(ValueError, match="d=4"):
        LandauBKW(4)
