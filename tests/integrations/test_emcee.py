"""emcee adapter: the ensemble sampler on the exact mixture of integration_oracle.py."""

import doctest
import pickle

import numpy as np
import pytest
import torch

emcee = pytest.importorskip("emcee")
from integration_oracle import DENSITY, TARGET, Counting, assert_moments  # noqa: E402

import disco_plug.integrations.emcee as emcee_adapter  # noqa: E402
from disco_plug.integrations.emcee import log_prob_fn  # noqa: E402


def ensemble_ess(s):
    """ESS of an emcee chain (walkers, steps, k): walkers x steps / integrated autocorrelation time."""
    tau = emcee.autocorr.integrated_time(s.transpose(0, 1).numpy(), quiet=True)
    return torch.tensor(s.shape[0] * s.shape[1] / tau)


def test_docstring_examples():
    assert doctest.testmod(emcee_adapter).failed == 0


def test_values_and_vectorized_calls():
    counting = Counting(DENSITY)
    fn = log_prob_fn(counting)
    theta = np.array([[0.1, 0.2], [-0.5, 0.3], [1.0, -1.0]])
    np.testing.assert_allclose(fn(theta), TARGET.log_prob(torch.tensor(theta)).numpy())
    assert counting.calls == 1
    assert isinstance(fn(theta[0]), float)
    with_prior = log_prob_fn(DENSITY, log_prior=lambda t: -np.sum(t**2, -1))
    np.testing.assert_allclose(with_prior(theta), fn(theta) - (theta**2).sum(1))
    with pytest.raises(ValueError, match="NaN or inf"):
        fn(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="last dimension d = 2"):
        fn(np.zeros(3))
    assert pickle.loads(pickle.dumps(fn))(theta[0]) == pytest.approx(fn(theta[0]))


def test_ensemble_sampler_recovers_the_mixture():
    rng = np.random.default_rng(0)
    sampler = emcee.EnsembleSampler(16, 2, log_prob_fn(DENSITY), vectorize=True)
    sampler.random_state = np.random.RandomState(1).get_state()
    sampler.run_mcmc(rng.normal(size=(16, 2)) * 0.1, 2500)
    chain = torch.tensor(sampler.get_chain(discard=500)).transpose(0, 1)  # (walkers, steps, d)
    assert_moments(chain, ensemble_ess)
