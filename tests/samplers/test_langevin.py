import math

import pytest
import torch

from disco_plug.samplers import (NonFiniteSampleError, get_sigmas_geometric, mala_init, mala_step,
                                 sample_annealed_langevin, sample_langevin, sample_mala)

from gmm_oracle import N, SIGMA_MAX, TARGET, log_density_and_score, prior


def test_ula_reproduces_target(matches_target):
    g = torch.Generator().manual_seed(0)
    matches_target(sample_langevin(TARGET.score_fn, prior(0, N, g), step_size=0.01, steps=800, generator=g))


def test_mala_reproduces_target_where_ula_is_biased(matches_target, threshold, fresh):
    """At tau = 0.25 ULA's O(tau) bias is visible; the Metropolis test removes it."""
    from disco_plug.samplers import energy_distance
    g = torch.Generator().manual_seed(1)
    x0 = prior(0, N, g)
    ula = sample_langevin(TARGET.score_fn, x0, step_size=0.25, steps=300, generator=g)
    assert energy_distance(ula, fresh) > threshold
    rates = []
    x = sample_mala(log_density_and_score, x0, step_size=0.25, steps=300, generator=g,
                    callback=lambda info: rates.append(info["acceptance_rate"]))
    matches_target(x)
    assert len(rates) == 300 and 0.2 < sum(rates) / len(rates) < 0.95


def test_mala_adapts_step_size_towards_target_acceptance():
    g = torch.Generator().manual_seed(2)
    taus, rates = [], []
    sample_mala(log_density_and_score, prior(0, N, g), step_size=5.0, steps=200, adapt_steps=150, generator=g,
                callback=lambda info: (taus.append(info["step_size"]), rates.append(info["acceptance_rate"])))
    assert taus[-1] < 1.0 and taus[-1] == taus[-20]  # shrunk from 5, then frozen
    assert abs(sum(rates[-50:]) / 50 - 0.574) < 0.1


def test_mala_kernel_accepts_everything_as_step_vanishes():
    g = torch.Generator().manual_seed(3)
    state = mala_init(prior(0, 64, g), log_density_and_score)
    state, info = mala_step(g, state, log_density_and_score, 1e-8)
    assert info.acceptance_rate.shape == (64,) and bool((info.acceptance_rate > 0.999).all())
    assert bool(info.is_accepted.all())


def test_annealed_langevin_reproduces_target(matches_target):
    g = torch.Generator().manual_seed(4)
    sigmas = get_sigmas_geometric(10, 0.01, SIGMA_MAX)
    matches_target(sample_annealed_langevin(TARGET.score_fn, prior(SIGMA_MAX, N, g), sigmas, generator=g))


def test_same_generator_seed_same_chains_and_batched_shapes():
    x0 = torch.zeros(3, 5, 2)
    a = sample_langevin(TARGET.score_fn, x0, step_size=0.05, steps=5, generator=torch.Generator().manual_seed(5))
    b = sample_langevin(TARGET.score_fn, x0, step_size=0.05, steps=5, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 5, 2) and a.dtype == torch.float32 and torch.equal(a, b)


def test_half_precision_input_is_accumulated_in_float32():
    seen = []
    sample_langevin(lambda x, s: (seen.append(x.dtype), -x)[1], torch.zeros(4, 2, dtype=torch.bfloat16),
                    step_size=0.1, steps=2)
    assert seen == [torch.float32, torch.float32]


def test_nan_in_a_chain_raises_naming_sampler_and_step():
    calls = []

    def score(x, sigma):
        calls.append(sigma)
        return torch.full_like(x, math.nan) if len(calls) == 4 else -x
    with pytest.raises(NonFiniteSampleError, match=r"sample_langevin.*step 3"):
        sample_langevin(score, torch.zeros(4, 2), step_size=0.1, steps=10)
    with pytest.raises(FloatingPointError, match=r"sample_langevin: the chains .*step 0"):
        sample_langevin(lambda x, s: -1e30 * torch.ones_like(x), torch.ones(4, 2), step_size=1e10, steps=3)
    fn = lambda x, s: (torch.where(x[..., 0] > 5, math.nan, 0.0), -x)  # noqa: E731
    with pytest.raises(NonFiniteSampleError, match=r"mala_step: the log-density.*step"):
        sample_mala(fn, torch.zeros(256, 2), step_size=10.0, steps=50, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kwargs, match", [
    (dict(step_size=0.0, steps=3), "step_size must be positive"),
    (dict(step_size=0.1, steps=0), "steps must be an integer >= 1"),
    (dict(step_size=0.1, steps=3, sigma=-1.0), "sigma must be >= 0"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_langevin(TARGET.score_fn, torch.zeros(2, 2), **kwargs)


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="floating-point"):
        sample_langevin(TARGET.score_fn, torch.zeros(2, 2, dtype=torch.int64), step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="initial x contains NaN"):
        sample_langevin(TARGET.score_fn, torch.tensor([[math.nan, 0.0]]), step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="score_fn must return a tensor shaped like x"):
        sample_langevin(lambda x, s: x[..., :1], torch.zeros(2, 2), step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="must return shapes"):
        sample_mala(lambda x, s: (x, x), torch.zeros(2, 2), step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="sigmas must be non-increasing"):
        sample_annealed_langevin(TARGET.score_fn, torch.zeros(2, 2), torch.tensor([0.1, 1.0]))
