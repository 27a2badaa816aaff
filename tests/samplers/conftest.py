"""Fixtures of the sampler tests; the oracle and the tolerance are explained in gmm_oracle.py."""

import pytest
import torch
from gmm_oracle import N, TARGET

from disco_plug.samplers import energy_distance


@pytest.fixture(scope="session")
def threshold():
    g = torch.Generator().manual_seed(99)
    null = torch.tensor([energy_distance(TARGET.sample(N, generator=g)[0], TARGET.sample(N, generator=g)[0])
                         for _ in range(40)])
    return float(null.mean() + 4 * null.std())


@pytest.fixture(scope="session")
def fresh():
    return TARGET.sample(N, generator=torch.Generator().manual_seed(7))[0]


@pytest.fixture
def matches_target(threshold, fresh):
    def check(x):
        assert x.shape == (N, 2) and x.dtype == torch.float64
        ed = energy_distance(x, fresh)
        assert ed <= threshold, f"energy distance {ed:.4g} above the two-sample noise level {threshold:.4g}"
        return ed
    return check


def test_threshold_has_power(threshold, fresh):
    """The tolerance is tight enough to reject the target blurred by sigma = 0.3."""
    blurred = TARGET.convolve(0.3).sample(N, generator=torch.Generator().manual_seed(3))[0]
    assert energy_distance(blurred, fresh) > threshold
