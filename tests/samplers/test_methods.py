"""The sampling-method table: every row runs from a SamplingProblem alone (no estimator) and draws from
the distribution whose score it is given."""

import math

import pytest
import torch

from disco_plug.samplers import METHODS, SAMPLING_METHODS, SamplingProblem


def _gaussian_problem(num: int, seed: int) -> SamplingProblem:
    """p = N(0, I_2) with its exact noised score and log-density; the prior and the starts are exact draws."""
    g = torch.Generator().manual_seed(seed)

    def log_density_and_score(x, sigma):
        v = 1.0 + sigma**2
        return -0.5 * (x * x).sum(-1) / v - math.log(2 * math.pi * v), -x / v

    return SamplingProblem(score_fn=lambda x, s: log_density_and_score(x, s)[1],
                           log_density_and_score_fn=log_density_and_score,
                           prior=lambda s: torch.randn(num, 2, generator=g, dtype=torch.float64) * math.sqrt(1 + s**2),
                           starts=lambda: torch.randn(num, 2, generator=g, dtype=torch.float64),
                           sigma_min=0.01, sigma_max=10.0, step_size=0.02, generator=g)


def test_table_names_are_the_sampling_methods():
    assert tuple(METHODS) == SAMPLING_METHODS
    assert all(m.default_steps >= 1 and m.description for m in METHODS.values())


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_every_row_draws_from_the_given_score(method):
    """2000 draws with the default number of steps: mean within 5 standard errors of 0, variance within 5 standard errors
    (sqrt(2 / num)) of 1 plus 0.15 for the discretization bias."""
    num = 2000
    x = METHODS[method].run(_gaussian_problem(num, 3), METHODS[method].default_steps)
    assert x.shape == (num, 2) and torch.isfinite(x).all()
    assert (x.mean(0).abs() <= 5 / math.sqrt(num)).all(), x.mean(0)
    assert ((x.var(0) - 1).abs() <= 5 * math.sqrt(2 / num) + 0.15).all(), x.var(0)
