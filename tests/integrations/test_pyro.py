"""Pyro adapters: NUTS/HMC potential, `pyro.sample` distribution, ULA/MALA kernel, pickling.

Analytic targets: the exact mixture of integration_oracle.py, and the conjugate posterior of that
mixture as a prior with a Gaussian likelihood (again a mixture, in closed form)."""

import doctest
import pickle

import pytest
import torch

import disco_plug

pyro = pytest.importorskip("pyro")
from integration_oracle import (DENSITY, ESTIMATOR_SLACK, TARGET, SkewedHeads, assert_moments,  # noqa: E402
                                posterior_of_prior_times_gaussian)
from pyro.infer import MCMC, NUTS  # noqa: E402
from pyro.ops.stats import effective_sample_size  # noqa: E402

import disco_plug.integrations.pyro as pyro_adapters  # noqa: E402
from disco_plug.integrations.pyro import (EstimatedDistribution, LangevinKernel, log_density,  # noqa: E402
                                          potential_fn)

X0 = {"x": torch.zeros(2, dtype=torch.float64)}


def pyro_ess(s):
    return effective_sample_size(s, chain_dim=0, sample_dim=1)


def run(kernel, num_samples, warmup_steps, seed=0, **kwargs):
    pyro.set_rng_seed(seed)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True, **kwargs)
    mcmc.run()
    return mcmc


def test_docstring_examples():
    assert doctest.testmod(pyro_adapters).failed == 0


def test_gradient_is_the_score_head():
    y = torch.zeros(3, 2, requires_grad=True)
    log_density(SkewedHeads(), y).sum().backward()
    assert torch.equal(y.grad, torch.tensor([[1.0, -2.0]] * 3))
    y = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(log_density(DENSITY, y).sum(), y)
    torch.testing.assert_close(g, TARGET.score(y.detach()))


@pytest.mark.parametrize("bad, message", [(torch.zeros(3), "last dimension"),
                                          (torch.tensor([0.0, float("nan")]), "NaN"),
                                          (torch.zeros(2, dtype=torch.int64), "floating point")])
def test_bad_points_are_named(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        potential_fn(DENSITY)({"x": bad})


def test_potential_needs_its_site():
    with pytest.raises(KeyError, match="'theta'"):
        potential_fn(DENSITY, site="theta")({"x": torch.zeros(2)})


def test_nuts_on_potential_recovers_the_mixture():
    mcmc = run(NUTS(potential_fn=potential_fn(DENSITY)), 400, 150, initial_params=X0)
    assert_moments(mcmc.get_samples(group_by_chain=True)["x"], pyro_ess)


def test_distribution_as_prior_in_a_model_under_nuts():
    obs, noise_var = torch.tensor([0.5, 0.4], dtype=torch.float64), 0.5
    prior = EstimatedDistribution(DENSITY)  # sample() falls back to exact mixture draws

    def model():
        x = pyro.sample("x", prior)
        pyro.sample("obs", pyro.distributions.Normal(x, noise_var**0.5).to_event(1), obs=obs)

    mcmc = run(NUTS(model), 400, 150)
    assert_moments(mcmc.get_samples(group_by_chain=True)["x"], pyro_ess,
                   gmm=posterior_of_prior_times_gaussian(obs, noise_var))


def test_distribution_as_likelihood_factor_contributes_log_prob_and_score():
    def model(value):
        x = pyro.sample("x", pyro.distributions.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1))
        pyro.sample("factor", EstimatedDistribution(DENSITY), obs=x + value)

    value = torch.tensor([0.3, -0.2], dtype=torch.float64)
    x = torch.tensor([0.1, 0.2], dtype=torch.float64, requires_grad=True)
    trace = pyro.poutine.trace(pyro.poutine.condition(model, {"x": x})).get_trace(value)
    log_joint = trace.log_prob_sum()
    (grad,) = torch.autograd.grad(log_joint, x)
    exact_lp, exact_score = TARGET.log_prob_and_score(x.detach() + value)
    torch.testing.assert_close(log_joint, exact_lp - 0.5 * (x.detach() ** 2).sum() - torch.log(
        torch.tensor(2 * torch.pi, dtype=torch.float64)))
    torch.testing.assert_close(grad, exact_score - x.detach())


def test_sample_resamples_and_follows_shapes():
    pool = torch.arange(10.0).reshape(5, 2)
    dist = EstimatedDistribution(DENSITY, samples=pool)
    draws = dist.sample((7, 3))
    assert draws.shape == (7, 3, 2)
    assert all(any(torch.equal(row, p) for p in pool) for row in draws.reshape(-1, 2))
    assert dist.expand((4,)).sample().shape == (4, 2)
    assert dist.log_prob(torch.zeros(4, 2)).shape == (4,)
    with pyro.plate("data", 6):
        assert pyro.sample("z", dist).shape == (6, 2)


def test_from_samples_draws_from_the_estimate():
    """With the stacked estimate, sample() is an exact draw from the estimated density (prior predictive),
    not a resample of the fitted draws: new points, whose mean is the draws' within 5 standard errors."""
    draws = torch.randn(400, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 + 1
    prior = EstimatedDistribution.from_samples(draws)
    new = prior.sample((4000,))
    assert new.shape == (4000, 2) and prior.samples is None and new.dtype == draws.dtype  # float64 kept
    assert not any(bool((draws == row).all(-1).any()) for row in new[:50])
    se = 2 * (1 / 4000 + 1 / 400) ** 0.5
    assert bool(((new.mean(0) - draws.mean(0)).abs() < 5 * se).all())


def test_sample_without_a_source_is_an_error():
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        EstimatedDistribution(SkewedHeads()).sample()
    with pytest.raises(ValueError, match=r"samples must be \(n, d = 2\)"):
        EstimatedDistribution(DENSITY, samples=torch.zeros(4, 3))


def test_mala_kernel_on_a_model_recovers_the_mixture():
    def model():
        pyro.sample("x", EstimatedDistribution(DENSITY))

    kernel = LangevinKernel(model, step_size=0.3)
    mcmc = run(kernel, 2000, 300)
    rate = mcmc.diagnostics()["acceptance rate"]["chain 0"]
    assert 0.45 < rate < 0.7, f"step-size adaptation missed the 0.574 target: {rate}"
    assert_moments(mcmc.get_samples(group_by_chain=True)["x"], pyro_ess)


def test_ula_kernel_on_a_potential_recovers_the_mixture():
    # ULA's bias at step 0.1 is a few percent of the variances, below the ESS tolerance (~40%).
    kernel = LangevinKernel(potential_fn=potential_fn(DENSITY), step_size=0.1, adjust=False)
    mcmc = run(kernel, 2000, 100, initial_params=X0)
    assert mcmc.diagnostics()["acceptance rate"]["chain 0"] == 1.0
    assert_moments(mcmc.get_samples(group_by_chain=True)["x"], pyro_ess)


def test_ula_follows_the_score_head():
    # The log-density head is flat, the score head is (1, -2): ULA must drift by steps * eps * score.
    steps, eps = 2000, 0.01
    kernel = LangevinKernel(potential_fn=potential_fn(SkewedHeads()), step_size=eps, adjust=False)
    end = run(kernel, steps, 0, initial_params={"x": torch.zeros(2)}).get_samples()["x"][-1]
    drift, noise_sd = steps * eps * torch.tensor([1.0, -2.0]), (2 * eps * steps) ** 0.5
    assert bool(((end - drift).abs() < 4 * noise_sd).all()), (end, drift)


class HalfScore:
    """The exact log-density with a score head off by a factor of 2."""

    dim = 2

    def log_density_and_score(self, y):
        log_p, score = TARGET.log_prob_and_score(y)
        return log_p, 0.5 * score


def test_mala_is_exact_for_the_log_density_head_even_with_a_wrong_score():
    kernel = LangevinKernel(potential_fn=potential_fn(HalfScore()), step_size=0.3)
    assert_moments(run(kernel, 2000, 300, initial_params=X0).get_samples(group_by_chain=True)["x"], pyro_ess)


def test_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        LangevinKernel()
    with pytest.raises(ValueError, match="step_size"):
        LangevinKernel(potential_fn=potential_fn(DENSITY), step_size=0.0)


def test_adapters_pickle():
    y = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pot = pickle.loads(pickle.dumps(potential_fn(DENSITY)))
    torch.testing.assert_close(pot({"x": y}), -TARGET.log_prob(y).sum())
    dist = pickle.loads(pickle.dumps(EstimatedDistribution(DENSITY)))
    torch.testing.assert_close(dist.log_prob(y), TARGET.log_prob(y))
    kernel = pickle.loads(pickle.dumps(LangevinKernel(potential_fn=pot, step_size=0.2)))
    assert kernel.step_size == 0.2


# With 2 CPUs Pyro runs the chains one after the other and says so (a UserWarning of Pyro's, not
# ours); with more CPUs the spawn context pickles the potential into worker processes.
@pytest.mark.filterwarnings("ignore:num_chains=2 is more than available_cpu:UserWarning")
def test_two_chains():
    init = {"x": torch.tensor([[-1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)}
    mcmc = run(NUTS(potential_fn=potential_fn(DENSITY)), 200, 100, num_chains=2, initial_params=init,
               mp_context="spawn")
    draws = mcmc.get_samples(group_by_chain=True)["x"]
    assert draws.shape == (2, 200, 2)
    assert_moments(draws, pyro_ess)


def test_nuts_on_the_bundled_estimator(fitted):
    mcmc = run(NUTS(potential_fn=potential_fn(fitted)), 150, 80, initial_params={"x": torch.zeros(2)})
    assert_moments(mcmc.get_samples(group_by_chain=True)["x"], pyro_ess, slack=ESTIMATOR_SLACK)


def test_estimator_distribution_draws_from_the_estimate_or_resamples_its_context(fitted):
    """The stacked estimate draws new points exactly; the gated blend, which has no exact sampler,
    resamples its context."""
    prior = EstimatedDistribution(fitted)
    draws = prior.sample((50,))
    assert draws.dtype == torch.get_default_dtype()
    assert not bool(torch.isin(draws[:, 0].double(), fitted.samples[:, 0]).any())
    pickle.loads(pickle.dumps(prior)).log_prob(draws)
    gated = EstimatedDistribution(disco_plug.load(blend="gated").fit(fitted.samples))
    draws = gated.sample((50,))
    assert draws.dtype == torch.get_default_dtype()
    assert bool(torch.isin(draws[:, 0].double(), fitted.samples[:, 0]).all())


def test_sample_constrained_keeps_a_positive_scale_lognormal():
    """A (mu, sigma) posterior with sigma estimated on its log, used as a prior with no data: NUTS gives
    back sigma's exact log-normal mean and sd, with every draw positive."""
    az = pytest.importorskip("arviz")
    from integration_oracle import assert_close_in_sds, lognormal_posterior

    from disco_plug.integrations.arviz import from_inference_data
    from disco_plug.integrations.pyro import sample_constrained

    posterior, mean, sd = lognormal_posterior()
    joint = from_inference_data(az.from_dict(posterior=posterior), transforms={"sigma": "log"})
    prior = EstimatedDistribution.from_samples(torch.as_tensor(joint.draws))

    def model():
        sample_constrained("z", prior, joint)

    mcmc = run(NUTS(model), 400, 150, seed=5)
    z = mcmc.get_samples()["z"]
    sigma = torch.exp(z[:, 1])
    assert bool((sigma > 0).all())
    ess = float(pyro_ess(sigma[None, :, None].double()))
    assert_close_in_sds(sigma.numpy(), mean, sd, ess)
    trace = pyro.poutine.trace(model).get_trace()
    torch.testing.assert_close(trace.nodes["sigma"]["value"], trace.nodes["z"]["value"][1].exp())


# -- a density with bounded columns (disco_plug.BoundedFit): Pyro samples its unconstrained points ------
def test_box_transform_is_the_fits_bijection_with_its_log_jacobian():
    from disco_plug.support import Bounds

    bounds = Bounds.parse([(0, 1), (2, None), (None, -1), None], 4)
    t = pyro_adapters.BoxTransform(bounds)
    z = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = t(z)
    assert bool(t.codomain.check(x).all()) and torch.allclose(t.inv(x), z)
    jac = torch.autograd.functional.jacobian(lambda v: t(v[None])[0], z[0])
    assert torch.allclose(t.log_abs_det_jacobian(z, x)[0], torch.logdet(jac.abs()))
    assert torch.distributions.biject_to(pyro_adapters.BoxConstraint(bounds)) == t


def test_bounded_prior_under_nuts_stays_in_its_box_and_matches_the_estimate():
    from disco_plug.targets import BetaProduct

    x = BetaProduct(2).sample(1024, generator=torch.Generator().manual_seed(0))
    fitted = disco_plug.load().fit(x, bounds=[(0, 1), (0, 1)])
    prior = EstimatedDistribution(fitted)
    assert isinstance(prior.support, pyro_adapters.BoxConstraint)

    def model():
        pyro.sample("theta", prior)

    draws = run(NUTS(model), 300, 150, num_chains=1).get_samples(group_by_chain=True)["theta"]
    assert bool(((draws > 0) & (draws < 1)).all())
    exact = fitted.sample(20000, generator=torch.Generator().manual_seed(1))
    ess = pyro_ess(draws)
    tol = 4 * exact.std(0) / ess.sqrt()
    assert bool(((draws.reshape(-1, 2).mean(0) - exact.mean(0)).abs() < tol).all())
