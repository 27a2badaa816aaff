"""NumPyro adapters: an estimated density as a ``numpyro.sample`` distribution and a NUTS potential.

``EstimatedDistribution`` is a ``numpyro.distributions.Distribution`` over R^d whose ``log_prob`` is the
estimator's log-density head with its score head as the gradient (a ``jax.custom_vjp`` around one host
call through ``jax.pure_callback``, integrations/_jax.py), so it works under ``jit``, ``vmap`` and
``jax.grad`` and NUTS (Hoffman & Gelman 2014) costs one torch call per leapfrog step. For the default
stacked estimate that density is normalized and its score is its exact gradient. ``sample`` draws from
the estimate itself, seeded by the JAX key, so ``init_to_sample`` and ``Predictive`` work. Unlike the
removed ``numpyro.contrib`` ``Empirical`` it can serve as a prior (pyro-ppl/numpyro#685, #1708):
yesterday's posterior draws as today's prior.

Example:
    >>> import jax, numpy as np
    >>> from numpyro.infer import MCMC, NUTS
    >>> draws = np.random.default_rng(0).normal(size=(512, 2))  # e.g. a previous posterior's draws
    >>> prior = EstimatedDistribution.from_samples(draws)
    >>> mcmc = MCMC(NUTS(potential_fn=potential_fn(prior)), num_warmup=50, num_samples=50,
    ...             progress_bar=False)
    >>> mcmc.run(jax.random.key(0), init_params=np.zeros(2))
    >>> mcmc.get_samples().shape
    (50, 2)
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from disco_plug.support import Bounds

from ._density import Density, as_density, samples_exactly

try:
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.distributions import constraints
    from numpyro.distributions.transforms import Transform as _NumPyroTransform
    from numpyro.distributions.transforms import biject_to
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("disco_plug.integrations.numpyro needs numpyro: pip install 'disco_plug[numpyro]'") from err

from ._jax import flat_log_density, host_sample

__all__ = ["BoxConstraint", "BoxTransform", "EstimatedDistribution", "potential_fn", "sample_constrained"]


def _check_samples(samples: Any, d: int | None = None) -> np.ndarray:
    samples = np.asarray(samples.detach().cpu() if isinstance(samples, torch.Tensor) else samples)
    if samples.ndim != 2 or samples.shape[0] < 1 or (d is not None and samples.shape[1] != d):
        want = f"(n, d = {d})" if d is not None else "(n, d)"
        raise ValueError(f"samples must be {want}, got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.number) or np.issubdtype(samples.dtype, np.complexfloating):
        raise TypeError(f"samples must be real numbers, got {samples.dtype}")
    bad = np.flatnonzero(~np.isfinite(samples).all(1))
    if bad.size:
        raise ValueError(f"samples contain NaN or inf in {bad.size} rows, first row {bad[0]}: "
                         f"{samples[bad[0]].tolist()}")
    return samples


class BoxConstraint(constraints.Constraint):
    """The support of a density with bounded columns (a `disco_plug.BoundedFit`'s `bounds`): the open box
    of its per-column (lower, upper), one event constraint on R^d. `biject_to` maps R^d onto it by the
    fit's own transforms, so NumPyro's NUTS samples the unconstrained points, as for a Beta."""

    event_dim = 1

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds

    def _limits(self) -> tuple[jax.Array, jax.Array]:
        return (jnp.asarray([t.lower for t in self.bounds.transforms]),
                jnp.asarray([t.upper for t in self.bounds.transforms]))

    def __call__(self, x: jax.Array) -> jax.Array:
        lower, upper = self._limits()
        return jnp.all((x > lower) & (x < upper), axis=-1)

    def feasible_like(self, prototype: jax.Array) -> jax.Array:
        inside = BoxTransform(self.bounds)(jnp.zeros(self.bounds.dim))  # the image of z = 0
        return jnp.broadcast_to(inside, jnp.shape(prototype)).astype(jnp.result_type(prototype, float))

    def tree_flatten(self) -> tuple:
        return (), ((), {"bounds": self.bounds})

    def eq(self, other: object, static: bool = False) -> bool:
        return isinstance(other, BoxConstraint) and other.bounds == self.bounds

    def __repr__(self) -> str:
        return f"BoxConstraint({self.bounds.describe()})"


class BoxTransform(_NumPyroTransform):
    """R^d -> the box of a `BoxConstraint`, column by column (disco_plug.support's maps)."""

    domain = constraints.real_vector

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds

    @property
    def codomain(self) -> BoxConstraint:
        return BoxConstraint(self.bounds)

    def __call__(self, z: jax.Array) -> jax.Array:
        return jnp.stack([t.constrain(z[..., j], jnp) for j, t in enumerate(self.bounds.transforms)], -1)

    def _inverse(self, x: jax.Array) -> jax.Array:
        return jnp.stack([t.unconstrain(x[..., j], jnp) for j, t in enumerate(self.bounds.transforms)], -1)

    def log_abs_det_jacobian(self, z: jax.Array, x: jax.Array, intermediates: Any = None) -> jax.Array:
        return sum(t.log_abs_det_jacobian(z[..., j], jnp) for j, t in enumerate(self.bounds.transforms))

    def tree_flatten(self) -> tuple:
        return (), ((), {"bounds": self.bounds})

    def eq(self, other: object, static: bool = False) -> bool:
        return isinstance(other, BoxTransform) and other.bounds == self.bounds


@biject_to.register(BoxConstraint)
def _box_bijection(constraint: BoxConstraint) -> BoxTransform:
    return BoxTransform(constraint.bounds)


class EstimatedDistribution(dist.Distribution):
    """A distribution on R^d known through samples, for ``numpyro.sample`` as a prior or a factor.

    Parameters:
        density: a fitted estimator (``disco_plug.load().fit(X)``), any `Density`, or a GaussianMixture.
        samples: (n, d) points for ``sample`` to resample with replacement. Without them ``sample``
            draws exactly from a fitted stacked estimator (the default), or calls ``density.sample``;
            a density with neither cannot be sampled (``log_prob`` still works).

    ``log_prob(value)`` takes values (..., d) in JAX's float type and returns (...); its gradient is
    the density's score head. Use ``EstimatedDistribution.from_samples(draws)`` to fit the bundled
    estimator first.
    """

    pytree_aux_fields = ("density", "_log_p", "_draw", "samples")

    @property
    def support(self) -> constraints.Constraint:
        """R^d, or the box of a density with bounds (a `disco_plug.BoundedFit`): NumPyro's NUTS then samples
        the unconstrained points through `biject_to(support)`."""
        bounds = getattr(self.density, "bounds", None)
        return BoxConstraint(bounds) if isinstance(bounds, Bounds) else constraints.real_vector

    def __init__(self, density: Density, samples: Any = None, *, validate_args: bool | None = None) -> None:
        self.density = as_density(density)
        d = self.density.dim
        self.samples = None if samples is None else _check_samples(samples, d)
        self._log_p = flat_log_density(self.density)
        self._draw = self._host_sampler()
        super().__init__(batch_shape=(), event_shape=(d,), validate_args=validate_args)

    @classmethod
    def from_samples(cls, samples: Any, estimator: Any = None) -> "EstimatedDistribution":
        """Fit the bundled estimator (or ``estimator``) on samples (n, d), e.g. a previous posterior's
        draws (numpy, JAX or torch); ``sample`` then draws from the fitted estimate."""
        if estimator is None:
            import disco_plug

            estimator = disco_plug.load()
        samples = _check_samples(samples)
        fitted = estimator.fit(samples)
        return cls(fitted, samples=None if samples_exactly(fitted) else samples)

    def _host_sampler(self) -> Callable | None:
        d = self.density.dim
        if self.samples is not None:
            samples = self.samples

            def draw(count: int, generator: torch.Generator) -> np.ndarray:
                return samples[torch.randint(samples.shape[0], (count,), generator=generator).numpy()]
        elif callable(getattr(self.density, "sample", None)):
            density = self.density

            def draw(count: int, generator: torch.Generator) -> np.ndarray:
                out = density.sample(count, generator=generator)
                return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
        else:
            return None
        return host_sample(draw, d)

    def log_prob(self, value: jax.Array) -> jax.Array:
        value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(jnp.result_type(float))
        if self._validate_args:
            self._validate_sample(value)
        return self._log_p(value)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        if self._draw is None:
            raise NotImplementedError(
                "this density cannot be sampled: pass samples=(n, d) or use EstimatedDistribution.from_samples")
        return self._draw(key, tuple(sample_shape) + self.batch_shape, jnp.result_type(float))

    @property
    def mean(self) -> jax.Array:
        if self.samples is not None:
            return jnp.asarray(self.samples.mean(0), dtype=jnp.result_type(float))
        raise NotImplementedError("the mean of an estimated density is not available in closed form")


def potential_fn(density: Density | EstimatedDistribution, site: str | None = None
                 ) -> Callable[[Any], jax.Array]:
    """A potential U = -log p for ``numpyro.infer.NUTS(potential_fn=...)`` / ``HMC``.

    Parameters:
        density: a fitted estimator, any `Density`, a GaussianMixture, or an `EstimatedDistribution`.
        site: if given, the potential reads ``params[site]`` from a dict of parameters (as
            ``MCMC.run(init_params={site: x0})`` passes them); otherwise params is the (d,) array.

    Returns:
        ``U(params) -> scalar`` whose gradient is minus the score head; pass
        ``MCMC.run(key, init_params=...)`` with a (d,) start (or (chains, d)).
    """
    log_p = density._log_p if isinstance(density, EstimatedDistribution) else flat_log_density(as_density(density))

    def potential(params: Any) -> jax.Array:
        if site is not None:
            if not isinstance(params, dict) or site not in params:
                got = sorted(params) if isinstance(params, dict) else type(params).__name__
                raise KeyError(f"potential needs the site {site!r}, got {got}")
            params = params[site]
        return -jnp.sum(log_p(jnp.asarray(params)))

    return potential


def sample_constrained(name: str, prior: EstimatedDistribution, joint: Any) -> dict[str, jax.Array]:
    """Inside a NumPyro model: draw the unconstrained vector ``name`` from ``prior`` and return each
    variable of ``joint`` (a `disco_plug.integrations.arviz.JointSample`) in its constrained space,
    recorded as a ``numpyro.deterministic`` site of its own name.

    Fit the prior once, outside the model: ``prior = EstimatedDistribution.from_samples(joint.draws)``.
    No Jacobian term is needed: the density lives on the unconstrained vector, where it was estimated.

    Example:
        >>> import arviz as az, jax, numpy as np, numpyro
        >>> from disco_plug.integrations.arviz import from_inference_data
        >>> rng = np.random.default_rng(0)
        >>> idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 200)),
        ...                                 "sigma": rng.lognormal(-1, 0.3, size=(2, 200))})
        >>> joint = from_inference_data(idata, transforms={"sigma": "log"})
        >>> prior = EstimatedDistribution.from_samples(joint.draws)
        >>> def model():
        ...     params = sample_constrained("trace_prior_", prior, joint)
        ...     numpyro.sample("y", numpyro.distributions.Normal(params["mu"], params["sigma"]), obs=0.1)
        >>> trace = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
        >>> bool(trace["sigma"]["value"] > 0), trace["trace_prior_"]["value"].shape
        (True, (2,))
    """
    if prior.event_shape != (joint.dim,):
        raise ValueError(f"the prior has event shape {prior.event_shape}, the joint sample D = {joint.dim} "
                         f"({joint.names})")
    import numpyro

    z = numpyro.sample(name, prior)
    return {v: numpyro.deterministic(v, x) for v, x in joint.constrain(z, jnp).items()}
