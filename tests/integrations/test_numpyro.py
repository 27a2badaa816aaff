"""NumPyro adapters: `EstimatedDistribution` as a `numpyro.sample` prior and the NUTS potential.

Analytic targets: the exact mixture of integration_oracle.py, and its conjugate posterior under a
Gaussian likelihood (a mixture in closed form); moment tolerances from NumPyro's own ESS estimator."""

import doctest

import numpy as np
import pytest
import torch

numpyro = pytest.importorskip("numpyro")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as nd  # noqa: E402
from integration_oracle import (DENSITY, ESTIMATOR_SLACK, TARGET, Counting, SkewedHeads, assert_moments,  # noqa: E402
                                exact_moments, posterior_of_prior_times_gaussian)
from numpyro.diagnostics import effective_sample_size  # noqa: E402
from numpyro.infer import MCMC, NUTS, Predictive, init_to_sample  # noqa: E402

import disco_plug.integrations.numpyro as np_adapters  # noqa: E402
from disco_plug.gmm import GaussianMixture  # noqa: E402
from disco_plug.integrations.numpyro import EstimatedDistribution, potential_fn  # noqa: E402

CHAINS = 2


def np_ess(s):
    return torch.tensor(effective_sample_size(s.numpy()))


def run(kernel, num_samples, num_warmup, seed=0, **kwargs):
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=CHAINS,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(seed), **kwargs)
    return mcmc


def test_docstring_examples():
    assert doctest.testmod(np_adapters).failed == 0


def test_log_prob_is_the_log_density_head_and_its_gradient_the_score_head():
    counting = Counting(SkewedHeads())
    dist = EstimatedDistribution(counting)
    value, grad = jax.jit(jax.value_and_grad(lambda x: dist.log_prob(x)))(jnp.ones(2))
    assert counting.calls == 1 and float(value) == 0.0 and grad.tolist() == [1.0, -2.0]
    y = jax.random.normal(jax.random.key(0), (5, 2))
    counting = Counting(DENSITY)
    values = jax.jit(jax.vmap(EstimatedDistribution(counting).log_prob))(y)
    assert counting.calls == 1 and values.shape == (5,)
    lp, score = TARGET.log_prob_and_score(torch.tensor(np.array(y)))
    np.testing.assert_allclose(values, lp.numpy(), rtol=1e-5)
    grads = jax.grad(lambda x: EstimatedDistribution(DENSITY).log_prob(x).sum())(y)
    np.testing.assert_allclose(grads, score.numpy(), rtol=1e-5, atol=1e-6)


def test_distribution_shapes_support_and_bad_values():
    dist = EstimatedDistribution(DENSITY)
    assert dist.event_shape == (2,) and dist.batch_shape == () and dist.support is nd.constraints.real_vector
    assert dist.log_prob(jnp.zeros((4, 3, 2))).shape == (4, 3)
    assert dist.expand((4,)).log_prob(jnp.zeros((4, 2))).shape == (4,)
    with pytest.raises(ValueError, match="d = 2"):
        dist.log_prob(jnp.zeros(3))
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(EstimatedDistribution(DENSITY, validate_args=False).log_prob(jnp.array([0.0, jnp.nan])))
    with pytest.warns(UserWarning, match="Out-of-support"):
        EstimatedDistribution(DENSITY, validate_args=True)._validate_sample(jnp.array([0.0, jnp.inf]))
    with pytest.raises(ValueError, match=r"samples must be \(n, d = 2\)"):
        EstimatedDistribution(DENSITY, samples=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="first row 1"):
        EstimatedDistribution(DENSITY, samples=np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        EstimatedDistribution(SkewedHeads()).sample(jax.random.key(0))


def test_sample_is_exact_reproducible_and_follows_the_key():
    dist = EstimatedDistribution(DENSITY)  # GaussianMixtureDensity.sample: exact mixture draws
    a = dist.sample(jax.random.key(1), (4000,))
    assert a.shape == (4000, 2) and a.dtype == jnp.result_type(float)
    np.testing.assert_array_equal(a, jax.jit(lambda k: dist.sample(k, (4000,)))(jax.random.key(1)))
    assert not np.array_equal(a[:10], dist.sample(jax.random.key(2), (10,)))
    assert_moments(torch.tensor(np.array(a), dtype=torch.float64)[None], lambda s: torch.full((6,), 4000.0))
    batched = jax.vmap(lambda k: dist.sample(k, (3,)))(jax.random.split(jax.random.key(3), 5))
    assert batched.shape == (5, 3, 2) and not np.array_equal(batched[0], batched[1])
    pool = np.arange(10.0).reshape(5, 2)
    draws = EstimatedDistribution(DENSITY, samples=pool).sample(jax.random.key(0), (7, 3))
    assert draws.shape == (7, 3, 2)
    assert all(any(np.array_equal(row, p) for p in pool) for row in np.array(draws).reshape(-1, 2))


def test_nuts_on_the_potential_recovers_the_mixture():
    mcmc = run(NUTS(potential_fn=potential_fn(DENSITY)), 400, 200, init_params=jnp.zeros((CHAINS, 2)))
    assert_moments(torch.tensor(np.array(mcmc.get_samples(group_by_chain=True)), dtype=torch.float64), np_ess)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0


def test_potential_reads_its_site():
    potential = potential_fn(DENSITY, site="theta")
    np.testing.assert_allclose(potential({"theta": jnp.zeros(2)}), -TARGET.log_prob(torch.zeros(2)).item(),
                               rtol=1e-5)
    with pytest.raises(KeyError, match="'theta'"):
        potential({"x": jnp.zeros(2)})


def test_prior_in_a_model_under_nuts_recovers_the_conjugate_posterior():
    obs, noise_var = np.array([0.5, 0.4]), 0.5
    prior = EstimatedDistribution(DENSITY)

    def model():
        x = numpyro.sample("x", prior)
        numpyro.sample("obs", nd.Normal(x, noise_var**0.5).to_event(1), obs=obs)

    mcmc = run(NUTS(model, init_strategy=init_to_sample), 400, 200, seed=1)
    draws = torch.tensor(np.array(mcmc.get_samples(group_by_chain=True)["x"]), dtype=torch.float64)
    assert_moments(draws, np_ess, gmm=posterior_of_prior_times_gaussian(torch.tensor(obs), noise_var))
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0


def test_prior_predictive_draws_from_the_estimate(fitted):
    def model():
        numpyro.sample("x", EstimatedDistribution(fitted))

    draws = Predictive(model, num_samples=3000)(jax.random.key(4))["x"]
    assert draws.shape == (3000, 2)
    assert not any(bool((fitted.samples == torch.tensor(np.array(row))).all(-1).any()) for row in draws[:20])
    assert_moments(torch.tensor(np.array(draws), dtype=torch.float64)[None], lambda s: torch.full((6,), 3000.0),
                   slack=ESTIMATOR_SLACK)


def test_from_samples_fits_the_bundled_estimator_and_nuts_recovers_the_target():
    draws = TARGET.sample(2048, generator=torch.Generator().manual_seed(5))[0].numpy()
    prior = EstimatedDistribution.from_samples(draws)
    assert prior.samples is None  # stacked estimate: exact draws from the estimate

    def model():
        numpyro.sample("x", prior)

    mcmc = run(NUTS(model), 200, 100, seed=2)
    samples = torch.tensor(np.array(mcmc.get_samples(group_by_chain=True)["x"]), dtype=torch.float64)
    assert_moments(samples, np_ess, slack=ESTIMATOR_SLACK)
    mean, _ = exact_moments()
    assert samples.shape == (CHAINS, 200, 2) and mean.shape == (2,)


def test_sample_constrained_keeps_a_positive_scale_lognormal():
    """A posterior with a positive scale, estimated on its log, used as a prior with no data: NUTS gives
    back sigma's exact log-normal mean and sd (the bookkeeping of the transform, no Jacobian lost)."""
    az = pytest.importorskip("arviz")
    from integration_oracle import assert_close_in_sds, lognormal_posterior

    from disco_plug.integrations.arviz import from_inference_data
    from disco_plug.integrations.numpyro import sample_constrained

    posterior, mean, sd = lognormal_posterior()
    joint = from_inference_data(az.from_dict(posterior=posterior), transforms={"sigma": "log"})
    prior = EstimatedDistribution.from_samples(joint.draws)

    def model():
        sample_constrained("z", prior, joint)

    mcmc = run(NUTS(model), 300, 150, seed=3)
    sigma = np.asarray(mcmc.get_samples(group_by_chain=True)["sigma"])
    assert sigma.min() > 0
    assert_close_in_sds(sigma, mean, sd, float(effective_sample_size(sigma)))
    three = GaussianMixture.from_components([1.0], torch.zeros(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="D = 2"):
        numpyro.handlers.seed(lambda: sample_constrained("z", EstimatedDistribution(three), joint), 0)()


# -- a density with bounded columns (disco_plug.BoundedFit): NumPyro samples its unconstrained points ----
def test_box_transform_is_the_fits_bijection_with_its_log_jacobian():
    from disco_plug.support import Bounds

    bounds = Bounds.parse([(0, 1), (2, None), (None, -1), None], 4)
    t = np_adapters.BoxTransform(bounds)
    z = jax.random.normal(jax.random.key(0), (5, 4))
    x = t(z)
    assert bool(t.codomain(x).all()) and np.allclose(t.inv(x), z, atol=1e-5)
    jac = jax.jacfwd(t)(z[0])
    np.testing.assert_allclose(t.log_abs_det_jacobian(z, x)[0], jnp.log(jnp.abs(jnp.linalg.det(jac))), rtol=1e-5)
    assert nd.transforms.biject_to(np_adapters.BoxConstraint(bounds)).eq(t)
    assert bool(t.codomain(t.codomain.feasible_like(x)).all())


def test_bounded_prior_under_nuts_stays_in_its_box_and_matches_the_estimate():
    import disco_plug
    from disco_plug.targets import BetaProduct

    x = BetaProduct(2).sample(1024, generator=torch.Generator().manual_seed(0))
    fitted = disco_plug.load().fit(x.numpy(), bounds=[(0, 1), (0, None)])
    prior = EstimatedDistribution(fitted)
    assert isinstance(prior.support, np_adapters.BoxConstraint)

    def model():
        numpyro.sample("theta", prior)

    draws = torch.tensor(np.asarray(run(NUTS(model), 300, 150).get_samples(group_by_chain=True)["theta"]),
                         dtype=torch.float64)
    assert bool(((draws > 0).all(-1) & (draws[..., 0] < 1)).all())
    exact = torch.as_tensor(fitted.sample(20000, generator=torch.Generator().manual_seed(1)))
    tol = 4 * exact.std(0) / np_ess(draws).sqrt()
    assert bool(((draws.reshape(-1, 2).mean(0) - exact.mean(0)).abs() < tol).all())
