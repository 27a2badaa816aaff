import math

import pytest
import torch
from gmm_oracle import N, SIGMA_MAX, TARGET, prior

from disco_plug.samplers import NonFiniteSampleError, get_sigmas_karras, sample_probability_flow


def test_probability_flow_reproduces_target(matches_target):
    g = torch.Generator().manual_seed(30)
    matches_target(sample_probability_flow(TARGET.score_fn, prior(SIGMA_MAX, N, g),
                                           get_sigmas_karras(40, 0.005, SIGMA_MAX)))


def test_heun_is_second_order_on_a_gaussian():
    """For p = N(0, I) the flow is x(sigma) = x(sigma_0) sqrt((1 + sigma^2) / (1 + sigma_0^2)); halving
    the step must cut Heun's error about 4x (Euler would give 2x)."""
    x0 = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    score = lambda x, s: -x / (1 + s**2)  # noqa: E731
    errors = []
    for n in (8, 16, 32):
        sigmas = torch.linspace(5.0, 0.5, n, dtype=torch.float64)
        x = sample_probability_flow(score, x0, sigmas)
        errors.append(float((x - x0 * math.sqrt(1.25 / 26)).abs().max()))
    assert 3.0 < errors[0] / errors[1] < 5.0 and 3.0 < errors[1] / errors[2] < 5.0


def test_deterministic_and_two_score_calls_per_step():
    calls = []
    score = lambda x, s: (calls.append(s), TARGET.score_fn(x, s))[1]  # noqa: E731
    sigmas = get_sigmas_karras(5, 0.1, 5.0)
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = sample_probability_flow(score, x0, sigmas)
    assert len(calls) == 2 * 4 + 1 and calls[1] == calls[2]  # Heun reuses level sigma_{i+1} next step
    assert torch.equal(a, sample_probability_flow(TARGET.score_fn, x0, sigmas))


def test_inf_raises_naming_sampler_and_step():
    with pytest.raises(NonFiniteSampleError, match=r"sample_probability_flow: the chains.*step 0"):
        sample_probability_flow(lambda x, s: torch.full_like(x, 1e308), torch.zeros(2, 2, dtype=torch.float64),
                                torch.tensor([10.0, 1.0]))
