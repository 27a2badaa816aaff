"""BlackJAX adapters: an estimated density as a JAX ``logdensity_fn`` and a score-only SG-MCMC gradient.

The torch density runs on the host through ``jax.pure_callback`` (integrations/_jax.py; a vmapped
batch of chains is one torch call). A ``jax.custom_vjp`` makes ``jax.value_and_grad(logdensity_fn)``
— what every gradient kernel calls (MALA, HMC, NUTS of Hoffman & Gelman 2014, window adaptation) —
cost one call that returns both heads: the log-density head is the value and the score head is the
gradient. Works under ``jit``, ``lax.scan`` and ``vmap``.
Positions may be any pytree whose leaves ravel to d numbers.
"""

from __future__ import annotations

from typing import Any, Callable

from ._density import Density, as_density

try:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("disco_plug.integrations.blackjax needs jax: pip install 'disco_plug[jax]'") from err

from ._jax import flat_log_density, host_call

__all__ = ["logdensity_fn", "score_fn", "grad_estimator"]

PyTree = Any


def logdensity_fn(density: Density) -> Callable[[PyTree], jax.Array]:
    """A JAX log-density for any BlackJAX gradient-based kernel; its gradient is the score head.

    Parameters:
        density: a fitted estimator (``disco_plug.load().fit(X)``), any `Density`, or a GaussianMixture.

    Returns:
        ``logdensity(position) -> scalar`` for a position pytree raveling to (d,).

    Example:
        >>> import jax, jax.numpy as jnp, blackjax, torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> mala = blackjax.mala(logdensity_fn(gmm), step_size=0.5)
        >>> state, info = jax.jit(mala.step)(jax.random.key(0), mala.init(jnp.zeros(2)))
        >>> state.position.shape
        (2,)
    """
    flat_logdensity = flat_log_density(as_density(density))

    def logdensity(position: PyTree) -> jax.Array:
        flat, _ = ravel_pytree(position)
        return flat_logdensity(flat)

    return logdensity


def score_fn(density: Density) -> Callable[[PyTree], PyTree]:
    """The score head alone as a JAX function: position pytree -> gradient pytree of the same structure."""
    call = host_call(as_density(density))

    def score(position: PyTree) -> PyTree:
        flat, unravel = ravel_pytree(position)
        return unravel(call(flat)[1])

    return score


def grad_estimator(density: Density, loglikelihood_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
                   data_size: int | None = None) -> Callable[[PyTree, PyTree], PyTree]:
    """Score-only gradient estimator for ``blackjax.sgld`` / ``blackjax.sghmc`` (Welling & Teh 2011,
    "Bayesian learning via stochastic gradient Langevin dynamics"; Chen et al. 2014 for SGHMC).

    Without a likelihood the estimator is the density's score and the minibatch is ignored, so SGLD is
    unadjusted Langevin on the estimated density. With ``loglikelihood_fn(position, datum)`` the density
    is the prior and the minibatch term is rescaled to the full ``data_size`` as in
    ``blackjax.sgmcmc.gradients.grad_estimator``.

    Example:
        >>> import jax, jax.numpy as jnp, blackjax, torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> sgld = blackjax.sgld(grad_estimator(gmm))
        >>> position = jax.jit(sgld.step)(jax.random.key(0), sgld.init(jnp.zeros(2)), None, 1e-2)
        >>> position.shape
        (2,)
    """
    if (loglikelihood_fn is None) != (data_size is None):
        raise ValueError("give loglikelihood_fn and data_size together")
    if data_size is not None and data_size < 1:
        raise ValueError(f"data_size must be positive, got {data_size}")
    score = score_fn(density)

    def estimator(position: PyTree, minibatch: PyTree) -> PyTree:
        grad = score(position)
        if loglikelihood_fn is None:
            return grad

        def loglik(p: PyTree) -> jax.Array:
            return data_size * jnp.mean(jax.vmap(loglikelihood_fn, in_axes=(None, 0))(p, minibatch))

        return jax.tree_util.tree_map(jnp.add, grad, jax.grad(loglik)(position))

    return estimator
