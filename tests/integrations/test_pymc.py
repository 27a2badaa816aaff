"""PyMC adapters: the PyTensor Op (value, gradient = score head, one density call), the CustomDist
distribution under NUTS and prior-predictive sampling, and input errors.

Analytic targets: the exact mixture of integration_oracle.py, and the conjugate posterior of that
mixture as a prior with Gaussian observations (again a mixture, in closed form). Few models are
compiled: PyMC compiles C code for each, which dominates the run time on a small machine."""

import doctest

import numpy as np
import pytest
import torch

pm = pytest.importorskip("pymc")
import arviz as az  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
from integration_oracle import (DENSITY, ESTIMATOR_SLACK, TARGET, Counting, SkewedHeads,  # noqa: E402
                                assert_moments, iid_ess, posterior_of_prior_times_gaussian)
from pytensor.gradient import DisconnectedType, NullTypeGradError  # noqa: E402

import disco_plug  # noqa: E402
import disco_plug.integrations.pymc as pymc_adapters  # noqa: E402
from disco_plug.integrations.pymc import EstimatedDistribution, LogDensityOp, logp_op  # noqa: E402

NUTS = dict(draws=500, tune=500, chains=2, cores=1, progressbar=False, compute_convergence_checks=False)


def arviz_ess(s):
    """ArviZ's rank-normalized bulk ESS of summands (chains, n, k), per summand."""
    return torch.as_tensor(az.ess(az.convert_to_dataset({"s": s.numpy()}))["s"].values)


def test_docstring_examples():
    assert doctest.testmod(pymc_adapters).failed == 0


# -- the Op ------------------------------------------------------------------------------------------
def test_op_value_and_gradient_are_the_density_heads():
    y = np.random.default_rng(0).normal(size=(5, 2))
    x = pt.dmatrix("x")
    log_p, score = logp_op(DENSITY)(x)
    f = pytensor.function([x], [log_p, score, pytensor.grad(log_p.sum(), x)])
    exact_lp, exact_score = TARGET.log_prob_and_score(torch.from_numpy(y))
    out_lp, out_score, grad = f(y)
    np.testing.assert_allclose(out_lp, exact_lp.numpy(), rtol=1e-12)
    np.testing.assert_allclose(out_score, exact_score.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, exact_score.numpy(), rtol=1e-12)
    v = pt.dvector("v")  # a single point (d,), and a weighted output gradient
    lp = LogDensityOp(DENSITY)(v)[0]
    g = pytensor.function([v], pytensor.grad(3.0 * lp, v))(y[0])
    np.testing.assert_allclose(g, 3.0 * exact_score[0].numpy(), rtol=1e-12)


def test_gradient_is_the_score_head_not_a_derivative_of_the_log_density():
    x = pt.dmatrix("x")
    log_p = LogDensityOp(SkewedHeads())(x)[0]
    value, grad = pytensor.function([x], [log_p.sum(), pytensor.grad(log_p.sum(), x)])(np.ones((3, 2)))
    assert value == 0.0
    np.testing.assert_array_equal(grad, [[1.0, -2.0]] * 3)


def test_value_and_gradient_cost_one_density_call():
    density = Counting(DENSITY)
    x = pt.dvector("x")
    log_p = LogDensityOp(density)(x)[0]
    f = pytensor.function([x], [log_p, pytensor.grad(log_p, x)])
    f(np.zeros(2))
    assert density.calls == 1  # the gradient's Op node merged with the value's
    shape = pytensor.function([x], LogDensityOp(density)(x)[1].shape)(np.zeros(2))
    assert tuple(shape) == (2,) and density.calls == 1  # infer_shape: no call for a shape


def test_score_output_has_no_gradient_and_disconnected_outputs_are_handled():
    x = pt.dvector("x")
    op = LogDensityOp(DENSITY)
    with pytest.raises(NullTypeGradError, match="Hessian"):
        pytensor.grad(op(x)[1].sum(), x)
    disconnected = op.grad([x], [DisconnectedType()(), DisconnectedType()()])
    assert isinstance(disconnected[0].type, DisconnectedType)


def test_op_equality_and_bad_values():
    other = Counting(DENSITY)
    assert LogDensityOp(DENSITY) == LogDensityOp(DENSITY) and hash(LogDensityOp(DENSITY)) == hash(LogDensityOp(DENSITY))
    assert LogDensityOp(DENSITY) != LogDensityOp(other)
    with pytest.raises(ValueError, match="last dimension d = 2"):
        LogDensityOp(DENSITY)(pt.dmatrix("m", shape=(None, 3)))
    with pytest.raises(TypeError, match="floating point"):
        LogDensityOp(DENSITY)(pt.lvector("i"))
    with pytest.raises(TypeError, match="expected a density"):
        LogDensityOp(object())
    x = pt.dvector("x")
    f = pytensor.function([x], LogDensityOp(DENSITY)(x)[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        f(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match=r"last dimension d = 2, got shape \(3,\)"):
        f(np.zeros(3))


# -- the distribution --------------------------------------------------------------------------------
def test_nuts_recovers_the_mixture_with_one_density_call_per_leapfrog_step():
    density = Counting(DENSITY)
    with pm.Model():
        EstimatedDistribution("x", fitted=density)
        idata = pm.sample(**NUTS, random_seed=1, discard_tuned_samples=False)
    assert int(idata.sample_stats.diverging.sum()) == 0
    steps = int(idata.sample_stats.n_steps.sum() + idata.warmup_sample_stats.n_steps.sum())
    iterations = NUTS["chains"] * (NUTS["draws"] + NUTS["tune"])
    # PyMC compiles logp and dlogp into one function: one density call per leapfrog step; the Op's
    # one-point cache answers PyMC's re-evaluation of each iteration's starting point, so only a few
    # calls per chain at initialization come on top.
    assert steps <= density.calls <= steps + 5 * NUTS["chains"], (density.calls, steps, iterations)
    assert_moments(torch.from_numpy(idata.posterior["x"].values), arviz_ess)


def test_nuts_on_the_bundled_estimator(fitted):
    with pm.Model():
        EstimatedDistribution("x", fitted=fitted)
        idata = pm.sample(**{**NUTS, "draws": 100, "tune": 100}, random_seed=3)
    assert int(idata.sample_stats.diverging.sum()) == 0
    assert_moments(torch.from_numpy(idata.posterior["x"].values), arviz_ess, slack=ESTIMATOR_SLACK)


def test_nuts_on_the_conjugate_oracle():
    """x ~ TARGET, y_i ~ N(x, s^2 I): the posterior is TARGET conditioned on the mean of the y_i with
    variance s^2 / k, a Gaussian mixture in closed form."""
    obs, noise_var = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]]), 1.0
    with pm.Model():
        x = EstimatedDistribution("x", fitted=DENSITY)
        pm.Normal("y", mu=x, sigma=noise_var**0.5, observed=obs)
        idata = pm.sample(**NUTS, random_seed=2)
    assert int(idata.sample_stats.diverging.sum()) == 0
    posterior = posterior_of_prior_times_gaussian(torch.from_numpy(obs.mean(0)), noise_var / len(obs))
    assert_moments(torch.from_numpy(idata.posterior["x"].values), arviz_ess, gmm=posterior)


def test_prior_predictive_draws_from_the_estimate_reproducibly():
    with pm.Model() as model:
        EstimatedDistribution("x", fitted=DENSITY)
    prior = pm.sample_prior_predictive(draws=1000, model=model, random_seed=5).prior["x"].values
    assert prior.shape == (1, 1000, 2) and prior.dtype == np.float64
    assert_moments(torch.from_numpy(prior), iid_ess)
    again = pm.sample_prior_predictive(draws=20, model=model, random_seed=5).prior["x"].values
    np.testing.assert_array_equal(again[0], prior[0, :20])
    other = pm.sample_prior_predictive(draws=20, model=model, random_seed=6).prior["x"].values
    assert not np.array_equal(other, again)


def test_estimator_fitted_in_the_distribution_draws_new_points(fitted, estimator):
    """Draws fitted by the bundled (stacked) estimator: pm.draw samples the estimate exactly, new points
    (not the fitted draws) with the target's moments; the logp is the estimator's."""
    draws = fitted.samples.numpy()
    x = EstimatedDistribution.dist(draws, estimator=estimator, size=2000)
    new = pm.draw(x, random_seed=7)
    assert new.shape == (2000, 2) and not np.isin(new[:, 0], draws[:, 0]).any()
    assert_moments(torch.from_numpy(new)[None], iid_ess, slack=ESTIMATOR_SLACK)
    np.testing.assert_array_equal(pm.draw(x, random_seed=7), new)
    y = np.random.default_rng(1).normal(size=(2000, 2))
    np.testing.assert_allclose(pm.logp(x, y).eval(), fitted.log_density_and_score(y)[0], rtol=1e-6)


def test_gated_estimator_and_densities_without_a_sampler_resample_their_draws(fitted):
    gated = disco_plug.load(blend="gated").fit(fitted.samples)
    new = pm.draw(EstimatedDistribution.dist(fitted=gated, size=50), random_seed=0)
    assert np.isin(new[:, 0], fitted.samples[:, 0].numpy()).all()  # the gated blend: its context
    pool = np.arange(10.0).reshape(5, 2)
    new = pm.draw(EstimatedDistribution.dist(pool, fitted=SkewedHeads(), shape=(7, 3, 2)), random_seed=0)
    assert new.shape == (7, 3, 2) and all((row == pool).all(1).any() for row in new.reshape(-1, 2))
    with pytest.raises(NotImplementedError, match="cannot be sampled"):
        pm.draw(EstimatedDistribution.dist(fitted=SkewedHeads()))


def test_shapes_dims_observed_and_the_starting_point():
    obs = np.array([[0.3, -0.2], [1.0, 0.5]])
    with pm.Model(coords={"coord": ["a", "b"], "group": [0, 1, 2]}) as model:
        a = EstimatedDistribution("a", fitted=DENSITY, dims="coord")
        b = EstimatedDistribution("b", np.array([[1.0, 2.0], [3.0, 4.0]]), fitted=DENSITY, dims=("group", "coord"))
        EstimatedDistribution("factor", fitted=DENSITY, observed=obs)
    assert a.type.shape == (2,) and tuple(b.shape.eval()) == (3, 2)
    start = model.initial_point()
    np.testing.assert_array_equal(start["b"], [[2.0, 3.0]] * 3)  # the draws' mean
    point = {"a": np.array([0.1, 0.2]), "b": np.zeros((3, 2))}
    exact = lambda v: TARGET.log_prob(torch.as_tensor(v)).sum().item()  # noqa: E731
    logp = model.compile_logp()(point)
    np.testing.assert_allclose(logp, exact(point["a"]) + exact(point["b"]) + exact(obs), rtol=1e-12)
    grad = model.compile_dlogp([a])(point)
    np.testing.assert_allclose(grad, TARGET.score(torch.from_numpy(point["a"])).numpy(), rtol=1e-12)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(draws=np.zeros(4)), ValueError, r"draws must be \(n, d\) with n >= 1, got shape \(4,\)"),
    (dict(draws=np.zeros((0, 2))), ValueError, r"got shape \(0, 2\)"),
    (dict(draws=torch.tensor([[0.0, 1.0], [1.0, 0.0], [float("nan"), 0.0]])), ValueError, "NaN or inf \\(row 2\\)"),
    (dict(draws=np.zeros((4, 3)), fitted=DENSITY), ValueError, r"\(n, d = 2\) with n >= 1, got shape \(4, 3\)"),
    (dict(), ValueError, "needs draws"),
    (dict(fitted=object()), TypeError, "expected a density"),
    (dict(fitted=DENSITY, estimator=object()), ValueError, "either fitted= or estimator="),
    (dict(fitted=DENSITY, logp=lambda v: v), TypeError, "defines logp itself"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        EstimatedDistribution.dist(**kwargs)


def test_a_name_is_required_in_a_model():
    with pm.Model(), pytest.raises(TypeError, match="needs a name first"):
        EstimatedDistribution(np.zeros((3, 2)))


def test_model_pickles_for_multiprocess_sampling():
    """pm.sample(cores > 1) ships the model to worker processes with cloudpickle."""
    cloudpickle = pytest.importorskip("cloudpickle")
    with pm.Model() as model:
        EstimatedDistribution("x", fitted=DENSITY)
    copy = cloudpickle.loads(cloudpickle.dumps(model))
    y = np.array([0.2, -0.1])
    np.testing.assert_allclose(copy.compile_logp()({"x": y}), TARGET.log_prob(torch.from_numpy(y)).item(), rtol=1e-12)
    assert pm.draw(copy["x"], random_seed=0).shape == (2,)


def test_prior_from_idata_keeps_a_positive_scale_lognormal():
    """prior_from_idata on a (mu, sigma) posterior with the transforms read from the previous PyMC model:
    NUTS on the prior alone gives back sigma's exact log-normal mean and sd, and all draws positive."""
    from integration_oracle import assert_close_in_sds, lognormal_posterior

    from disco_plug.integrations.pymc import prior_from_idata

    posterior, mean, sd = lognormal_posterior()
    with pm.Model() as previous:
        pm.Normal("mu")
        pm.HalfNormal("sigma")
    with pm.Model():
        prior = prior_from_idata(az.from_dict(posterior=posterior), model=previous)
        assert sorted(prior) == ["mu", "sigma"]
        idata = pm.sample(300, tune=150, chains=2, cores=1, random_seed=4, progressbar=False,
                          compute_convergence_checks=False)
    sigma = idata.posterior["sigma"].values
    assert sigma.min() > 0 and int(idata.sample_stats["diverging"].values.sum()) == 0
    assert_close_in_sds(sigma, mean, sd, float(az.ess(az.convert_to_dataset({"s": sigma}))["s"]))
