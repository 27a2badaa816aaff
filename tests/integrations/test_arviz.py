"""ArviZ bridge: stacking InferenceData draws into one unconstrained joint sample, and the transforms.

Closed-form checks: a log-normal scale whose log is N(0, 1) gets back its log-normal density through
the Jacobian; every transform's log |f'| equals a finite-difference derivative."""

import doctest
import math

import numpy as np
import pytest
import scipy.stats

az = pytest.importorskip("arviz")

import disco_plug.integrations.arviz as az_bridge  # noqa: E402
from disco_plug.integrations.arviz import Transform, from_inference_data  # noqa: E402

RNG = np.random.default_rng(0)
SPECS = ["identity", "log", "logit", ("lower", -2.0), ("upper", 3.0), ("interval", -1.0, 4.0)]


def idata():
    return az.from_dict(
        posterior={"mu": RNG.normal(size=(2, 50)), "sigma": RNG.lognormal(size=(2, 50)),
                   "p": RNG.uniform(0.01, 0.99, size=(2, 50)), "beta": RNG.normal(size=(2, 50, 3))},
        coords={"feature": ["age", "bmi", "bp"]}, dims={"beta": ["feature"]})


def test_docstring_examples():
    assert doctest.testmod(az_bridge).failed == 0


def test_stacking_flattens_chains_draws_and_vectors_with_names():
    data = idata()
    joint = from_inference_data(data, ["beta", "sigma", "p"], transforms={"sigma": "log", "p": "logit"})
    assert joint.names == ["beta[age]", "beta[bmi]", "beta[bp]", "sigma", "p"]
    assert joint.transforms == {"beta": "identity", "sigma": "log", "p": "logit"}
    assert joint.draws.shape == (100, 5) and joint.draws.dtype == np.float64
    post = data.posterior
    np.testing.assert_array_equal(joint.draws[:, :3], post["beta"].values.reshape(100, 3))  # chain-major
    np.testing.assert_allclose(joint.draws[:, 3], np.log(post["sigma"].values.reshape(-1)))
    back = joint.constrain(joint.draws)
    np.testing.assert_allclose(back["p"], post["p"].values.reshape(-1))
    assert back["beta"].shape == (100, 3) and back["sigma"].shape == (100,)
    np.testing.assert_allclose(joint.unconstrain(back), joint.draws)
    assert from_inference_data(data).names[:2] == ["mu", "sigma"]  # default: every variable, in order


@pytest.mark.parametrize("spec", SPECS)
def test_transform_round_trip_and_jacobian(spec):
    t = Transform.parse(spec)
    z = np.linspace(-4, 4, 17)
    x = t.constrain(z)
    assert np.all((x > t.lower) & (x < t.upper))
    np.testing.assert_allclose(t.unconstrain(x), z, atol=1e-9)
    h = 1e-6
    numeric = np.log(np.abs((t.constrain(z + h) - t.constrain(z - h)) / (2 * h)))
    np.testing.assert_allclose(t.log_abs_det_jacobian(z), numeric, atol=1e-6)


def test_jacobian_turns_the_density_of_log_sigma_into_the_density_of_sigma():
    joint = from_inference_data(idata(), ["sigma"], transforms={"sigma": "log"})
    sigma = np.linspace(0.05, 6, 40)
    z = joint.unconstrain({"sigma": sigma})
    log_p = scipy.stats.norm.logpdf(z[:, 0]) - joint.log_abs_det_jacobian(z)
    np.testing.assert_allclose(log_p, scipy.stats.lognorm(1.0).logpdf(sigma), rtol=1e-10)


def test_constrain_in_jax_pytensor_and_torch():
    jnp = pytest.importorskip("jax.numpy")
    pt = pytest.importorskip("pytensor.tensor")
    joint = from_inference_data(idata(), ["beta", "sigma", "p"], transforms={"sigma": "log", "p": "logit"})
    z = joint.draws[:4]
    expected = joint.constrain(z)
    got = joint.constrain(jnp.asarray(z), jnp)
    for name in expected:
        np.testing.assert_allclose(np.asarray(got[name]), expected[name], rtol=1e-5)
    import torch

    got = joint.constrain(torch.from_numpy(z), torch)
    for name in expected:
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=1e-12)
    np.testing.assert_allclose(joint.log_abs_det_jacobian(torch.from_numpy(z), torch).numpy(),
                               joint.log_abs_det_jacobian(z), rtol=1e-12)
    zt = pt.dvector("z")
    out = joint.constrain(zt, pt)
    for i in range(2):
        for name in expected:
            np.testing.assert_allclose(out[name].eval({zt: z[i]}), expected[name][i], rtol=1e-12)
    np.testing.assert_allclose(joint.log_abs_det_jacobian(zt, pt).eval({zt: z[0]}),
                               joint.log_abs_det_jacobian(z[0]), rtol=1e-12)


def test_transforms_from_constraint_objects():
    constraints = pytest.importorskip("numpyro.distributions.constraints")
    assert Transform.parse(constraints.positive).name == "log"
    assert Transform.parse(constraints.unit_interval).name == "logit"
    interval = Transform.parse(constraints.interval(2.0, 5.0))
    assert (interval.lower, interval.upper) == (2.0, 5.0)
    assert Transform.parse(constraints.real).name == "identity"
    assert Transform.parse(constraints.real_vector).name == "identity"
    import torch.distributions.constraints as tc

    assert Transform.parse(tc.positive).name == "log"


def test_transforms_read_from_a_pymc_model():
    pm = pytest.importorskip("pymc")
    with pm.Model() as model:
        pm.Normal("mu")
        pm.HalfNormal("sigma")
        pm.Beta("p", 2, 2)
        pm.Uniform("u", -1, 2)
    got = az_bridge.transforms_from_pymc(model)
    assert {k: v.name for k, v in got.items()} == {"mu": "identity", "sigma": "log", "p": "logit",
                                                   "u": "interval(-1, 2)"}
    data = az.from_dict(posterior={"sigma": RNG.lognormal(size=(1, 5)), "u": RNG.uniform(-1, 2, size=(1, 5))})
    joint = from_inference_data(data, model=model)
    assert joint.transforms == {"sigma": "log", "u": "interval(-1, 2)"}


def test_bad_input_is_named():
    data = idata()
    with pytest.raises(KeyError, match="unknown variables \\['tau'\\]"):
        from_inference_data(data, ["tau"])
    with pytest.raises(KeyError, match="not among the stacked"):
        from_inference_data(data, ["mu"], transforms={"sigma": "log"})
    with pytest.raises(ValueError, match="unknown transform"):
        from_inference_data(data, ["sigma"], transforms={"sigma": "softplus"})
    negative = az.from_dict(posterior={"sigma": np.array([[1.0, 2.0, -0.5]])})
    with pytest.raises(ValueError, match=r"'sigma' has 1 values outside \(0, inf\).*chain 0, draw 2: -0.5"):
        from_inference_data(negative, transforms={"sigma": "log"})
    nan = az.from_dict(posterior={"beta": np.array([[[1.0, np.nan]]])})
    with pytest.raises(ValueError, match=r"that are NaN or inf; first at chain 0, draw 0, index \(1,\)"):
        from_inference_data(nan)
    with pytest.raises(ValueError, match="last dimension D = 5"):
        from_inference_data(data, ["beta", "sigma", "p"]).constrain(np.zeros(4))
    assert math.isinf(Transform().upper)
