"""samplers.landau: the Landau interaction conserves momentum and energy."""

import torch

from disco_plug.samplers.landau import landau_velocity


def test_landau_velocity_conserves_momentum_and_energy():
    g = torch.Generator().manual_seed(3)
    v, s = torch.randn(300, 3, generator=g, dtype=torch.float64), torch.randn(300, 3, generator=g, dtype=torch.float64)
    u = landau_velocity(v, s, 1 / 24, chunk=128)
    assert float(u.sum(0).abs().max()) < 1e-12  # d/dt sum v_i
    assert abs(float((v * u).sum())) < 1e-12  # d/dt sum |v_i|^2 / 2
