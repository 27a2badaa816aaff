"""BlackJAX adapters: custom-VJP log-density (MALA, HMC, NUTS with window adaptation) and the score-only
SG-MCMC gradient, checked on the exact mixture of integration_oracle.py under jit, lax.scan and vmap."""

import doctest

import numpy as np
import pytest
import torch

jax = pytest.importorskip("jax")
blackjax = pytest.importorskip("blackjax")
import jax.numpy as jnp  # noqa: E402
from integration_oracle import DENSITY, ESTIMATOR_SLACK, TARGET, Counting, SkewedHeads, assert_moments  # noqa: E402

import disco_plug.integrations.blackjax as bj_adapters  # noqa: E402
from disco_plug.integrations.blackjax import grad_estimator, logdensity_fn, score_fn  # noqa: E402

CHAINS = 4


def bj_ess(s):
    return torch.tensor(np.array(blackjax.diagnostics.effective_sample_size(
        jnp.asarray(s.numpy()), chain_axis=0, sample_axis=1)))


def starts(key):
    return jax.random.normal(key, (CHAINS, 2))


def run_chains(kernel, states, num_steps, key):
    """lax.scan over steps of a vmapped kernel, jitted once: draws (chains, steps, d)."""
    step = jax.vmap(kernel.step)

    def one(states, key):
        states, _ = step(jax.random.split(key, CHAINS), states)
        return states, states.position

    _, draws = jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, num_steps)))(states, key)
    return torch.tensor(np.array(draws)).transpose(0, 1)


def test_docstring_examples():
    assert doctest.testmod(bj_adapters).failed == 0


def test_value_and_grad_is_one_call_with_the_score_head():
    counting = Counting(SkewedHeads())
    value, grad = jax.jit(jax.value_and_grad(logdensity_fn(counting)))(jnp.ones(2))
    assert counting.calls == 1
    assert float(value) == 0.0 and grad.tolist() == [1.0, -2.0]


def test_vmap_is_one_call_and_exact():
    counting = Counting(DENSITY)
    y = jax.random.normal(jax.random.key(0), (5, 2))
    values, grads = jax.jit(jax.vmap(jax.value_and_grad(logdensity_fn(counting))))(y)
    assert counting.calls == 1
    lp, score = TARGET.log_prob_and_score(torch.tensor(np.array(y)))
    np.testing.assert_allclose(values, lp.numpy(), rtol=1e-5)
    np.testing.assert_allclose(grads, score.numpy(), rtol=1e-5, atol=1e-6)


def test_pytree_positions():
    logdensity = logdensity_fn(DENSITY)
    position = {"a": jnp.array(0.3), "b": jnp.array([-0.2])}
    grad = jax.grad(logdensity)(position)
    score = TARGET.score(torch.tensor([0.3, -0.2]))
    np.testing.assert_allclose([grad["a"], grad["b"][0]], score.numpy(), rtol=1e-5)
    np.testing.assert_allclose(score_fn(DENSITY)(position)["b"], grad["b"], rtol=1e-6)


def test_bad_positions_are_named():
    with pytest.raises(ValueError, match="ravel to d = 2"):
        logdensity_fn(DENSITY)(jnp.zeros(3))
    with pytest.raises(TypeError, match="floating point"):
        logdensity_fn(DENSITY)(jnp.zeros(2, dtype=jnp.int32))
    with pytest.raises(Exception, match="NaN or inf"):
        jax.block_until_ready(jax.jit(logdensity_fn(DENSITY))(jnp.array([0.0, jnp.nan])))


@pytest.mark.parametrize("name", ["mala", "hmc"])
def test_gradient_kernels_recover_the_mixture(name):
    logdensity = logdensity_fn(DENSITY)
    if name == "mala":
        kernel, steps = blackjax.mala(logdensity, step_size=0.3), 800
    else:
        kernel, steps = blackjax.hmc(logdensity, step_size=0.3, inverse_mass_matrix=jnp.ones(2),
                                     num_integration_steps=5), 300
    states = jax.vmap(kernel.init)(starts(jax.random.key(1)))
    assert_moments(run_chains(kernel, states, steps, jax.random.key(2)), bj_ess)


def test_nuts_with_window_adaptation_recovers_the_mixture():
    logdensity = logdensity_fn(DENSITY)
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (state, params), _ = warmup.run(jax.random.key(3), jnp.zeros(2), num_steps=150)
    kernel = blackjax.nuts(logdensity, **params)
    states = jax.vmap(kernel.init)(starts(jax.random.key(4)))
    assert_moments(run_chains(kernel, states, 200, jax.random.key(5)), bj_ess)


def test_sgld_with_the_score_alone_recovers_the_mixture():
    # Constant-step SGLD is unadjusted Langevin: at step 0.05 its bias is a few percent of the
    # variances, below the ESS tolerance.
    sgld = blackjax.sgld(grad_estimator(DENSITY))
    step = jax.vmap(lambda k, x: sgld.step(k, x, None, 0.05))

    def one(x, key):
        x = step(jax.random.split(key, CHAINS), x)
        return x, x

    _, draws = jax.jit(lambda x, k: jax.lax.scan(one, x, jax.random.split(k, 1200)))(
        starts(jax.random.key(6)), jax.random.key(7))
    draws = torch.tensor(np.array(draws)).transpose(0, 1)[:, 200:]
    assert_moments(draws, bj_ess)


def test_grad_estimator_adds_the_rescaled_likelihood():
    data = jnp.array([[0.5, 0.1], [0.2, -0.3], [1.0, 0.0]])

    def loglik(position, datum):
        return -0.5 * jnp.sum((datum - position) ** 2)

    estimator = grad_estimator(DENSITY, loglik, data_size=30)
    position = jnp.array([0.1, 0.2])
    got = jax.jit(estimator)(position, data)
    expected = TARGET.score(torch.tensor([0.1, 0.2])).numpy() + 30 * np.mean(data - position, axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    sghmc = blackjax.sghmc(estimator, num_integration_steps=3)
    assert jax.jit(sghmc.step)(jax.random.key(0), sghmc.init(position), data, 1e-3).shape == (2,)
    with pytest.raises(ValueError, match="together"):
        grad_estimator(DENSITY, loglik)


def test_mala_on_the_bundled_estimator(fitted):
    kernel = blackjax.mala(logdensity_fn(fitted), step_size=0.3)
    states = jax.vmap(kernel.init)(starts(jax.random.key(8)))
    assert_moments(run_chains(kernel, states, 250, jax.random.key(9)), bj_ess, slack=ESTIMATOR_SLACK)


def test_a_bounded_fit_is_minus_infinity_outside_its_box_and_rwmh_never_leaves_it():
    import disco_plug
    from disco_plug.targets import BetaProduct

    x = BetaProduct(2).sample(512, generator=torch.Generator().manual_seed(0))
    logdensity = logdensity_fn(disco_plug.load().fit(x, bounds=[(0, 1), (0, 1)]))
    value, grad = jax.value_and_grad(logdensity)(jnp.array([1.5, 0.5]))
    assert float(value) == -np.inf and grad.tolist() == [0.0, 0.0]
    value, grad = jax.value_and_grad(logdensity)(jnp.array([jnp.inf, 0.5]))  # e.g. a float32 exp overflow
    assert float(value) == -np.inf and grad.tolist() == [0.0, 0.0]
    kernel = blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.2 * jnp.eye(2))
    states = jax.vmap(kernel.init)(jnp.asarray(x[:CHAINS].numpy(), dtype=jnp.float32))
    draws = run_chains(kernel, states, 200, jax.random.key(1))
    assert bool(((draws > 0) & (draws < 1)).all())
