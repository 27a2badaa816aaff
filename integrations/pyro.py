"""Pyro adapters: an estimated density as an HMC/NUTS potential, a `pyro.sample` distribution, and a
Langevin (ULA/MALA) MCMC kernel.

Everything converts one call, ``density.log_density_and_score(y)``: the log-density head is the
value, the score head is the gradient (a custom autograd function), so HMC and NUTS (Hoffman & Gelman
2014) integrate with the model's own score in one forward pass per leapfrog step. All objects here
pickle when the density does, so ``MCMC(..., num_chains > 1)`` can ship them to worker processes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from disco_plug.support import Bounds

from ._density import Density, as_density, evaluate, samples_exactly

try:
    import pyro.distributions as dist
    from pyro.infer.autoguide.initialization import init_to_uniform
    from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
    from pyro.infer.mcmc.util import initialize_model
    from pyro.ops.integrator import potential_grad
    from torch.distributions import biject_to, constraints, transform_to
    from torch.distributions.transforms import Transform as _TorchTransform
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("disco_plug.integrations.pyro needs pyro-ppl: pip install 'disco_plug[pyro]'") from err

__all__ = ["log_density", "potential_fn", "PotentialFn", "EstimatedDistribution", "LangevinKernel",
           "sample_constrained", "BoxConstraint", "BoxTransform"]


class _LogDensity(torch.autograd.Function):
    """log p(y) whose backward is the score head, not autograd through the network."""

    @staticmethod
    def forward(ctx, y: Tensor, density: Density) -> Tensor:  # type: ignore[override]
        log_p, score = evaluate(density, y)
        ctx.save_for_backward(score)
        return log_p

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (score,) = ctx.saved_tensors
        return grad[..., None] * score, None


def log_density(density: Density, y: Tensor) -> Tensor:
    """log p(y) for y (..., d), differentiable in y with gradient = the density's score head.

    Example:
        >>> import torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> y = torch.ones(2, requires_grad=True)
        >>> log_density(gmm, y).backward()
        >>> y.grad.tolist()
        [-1.0, -1.0]
    """
    return _LogDensity.apply(y, as_density(density))


@dataclass(frozen=True)
class PotentialFn:
    """U(params) = -log p(params[site]): the `potential_fn` of Pyro's HMC/NUTS. Picklable."""

    density: Density
    site: str = "x"

    def __call__(self, params: dict[str, Tensor]) -> Tensor:
        if self.site not in params:
            raise KeyError(f"potential needs the site {self.site!r}, got sites {sorted(params)}")
        return -log_density(self.density, params[self.site]).sum()


def potential_fn(density: Density, site: str = "x") -> PotentialFn:
    """A potential function for ``pyro.infer.HMC/NUTS(potential_fn=...)`` on one site of shape (d,).

    Parameters:
        density: a fitted estimator (``disco_plug.load().fit(X)``), any `Density`, or a GaussianMixture.
        site: the name of the parameter in Pyro's params dict.

    Returns:
        A picklable callable params -> -log p(params[site]) whose gradient is the score head.

    Example:
        >>> import torch
        >>> from pyro.infer import MCMC, NUTS
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> mcmc = MCMC(NUTS(potential_fn=potential_fn(gmm)), num_samples=20, warmup_steps=20,
        ...             initial_params={"x": torch.zeros(2)}, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["x"].shape
        torch.Size([20, 2])
    """
    return PotentialFn(as_density(density), site)



class BoxConstraint(constraints.Constraint):
    """The support of a density with bounded columns (a `disco_plug.BoundedFit`'s `bounds`): the open box
    of its per-column (lower, upper), as one event constraint on R^d. `biject_to` maps R^d onto it by
    the fit's own transforms, so Pyro's HMC and NUTS sample the unconstrained points."""

    event_dim = 1

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        flat = value.detach().reshape(-1, self.bounds.dim).to(torch.float64)
        return self.bounds.inside(flat).reshape(value.shape[:-1])

    def __repr__(self) -> str:
        return f"BoxConstraint({self.bounds.describe()})"


class BoxTransform(_TorchTransform):
    """R^d -> the box of a `BoxConstraint`, column by column (disco_plug.support's maps)."""

    domain = constraints.real_vector
    bijective = True

    def __init__(self, bounds: Bounds, cache_size: int = 0) -> None:
        self.bounds = bounds
        super().__init__(cache_size=cache_size)

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return BoxConstraint(self.bounds)

    def with_cache(self, cache_size: int = 1) -> "BoxTransform":
        return self if self._cache_size == cache_size else BoxTransform(self.bounds, cache_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoxTransform) and other.bounds == self.bounds

    def _flat(self, t: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        return fn(t.reshape(-1, self.bounds.dim)).reshape(t.shape)

    def _call(self, z: Tensor) -> Tensor:
        return self._flat(z, self.bounds.constrain)

    def _inverse(self, x: Tensor) -> Tensor:
        return self._flat(x, self.bounds.unconstrain)

    def log_abs_det_jacobian(self, z: Tensor, x: Tensor) -> Tensor:
        out = z.new_zeros(z.shape[:-1])
        for j, t in enumerate(self.bounds.transforms):
            if t.bounded:
                out = out + t.log_abs_det_jacobian(z[..., j], torch)
        return out


@biject_to.register(BoxConstraint)
@transform_to.register(BoxConstraint)
def _box_bijection(constraint: BoxConstraint) -> BoxTransform:
    return BoxTransform(constraint.bounds)


class EstimatedDistribution(dist.TorchDistribution):
    """A distribution known through samples, for ``pyro.sample`` as a prior or a likelihood factor.

    ``log_prob`` is the estimator's log-density with its score as the gradient, so NUTS/HMC see the
    estimated score (for the default stacked estimate a normalized density whose score is its exact
    gradient). ``sample()`` draws from the estimate itself where it can (a fitted stacked estimator's
    exact sampler, or ``density.sample(n)``), else resamples the given samples with replacement;
    Pyro's initialization strategies and prior-predictive checks call it. Unlike
    ``pyro.distributions.Empirical`` it has a usable ``log_prob``, e.g. for a previous posterior used
    as the next prior.

    Parameters:
        density: a fitted estimator or any `Density` (or a GaussianMixture).
        samples: (n, d) points for ``sample()`` to resample with replacement. Without them
            ``sample()`` draws exactly from a fitted stacked estimator, resamples the context of a fitted
            gated one (``density.samples``), or calls ``density.sample(n)`` when the density has one.

    Example:
        >>> import torch, pyro
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> prior = EstimatedDistribution(gmm, samples=gmm.sample(100)[0])
        >>> def model():
        ...     return pyro.sample("theta", prior)
        >>> model().shape
        torch.Size([2])
    """

    arg_constraints: dict = {}
    has_rsample = False

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        """R^d, or the box of a density with bounds (a `disco_plug.BoundedFit`): Pyro's HMC and NUTS then
        sample the unconstrained points through `biject_to(support)`, as for a Beta or a HalfNormal."""
        bounds = getattr(self.density, "bounds", None)
        return BoxConstraint(bounds) if isinstance(bounds, Bounds) else constraints.real_vector

    def __init__(self, density: Density, samples: Tensor | None = None,
                 validate_args: bool | None = None) -> None:
        self.density = as_density(density)
        d = self.density.dim
        context = getattr(self.density, "samples", None)
        if samples is None and isinstance(context, Tensor) and not samples_exactly(self.density):
            samples = context.to(torch.get_default_dtype())
        if samples is not None:
            samples = torch.as_tensor(samples)
            if samples.ndim != 2 or samples.shape[1] != d or samples.shape[0] < 1:
                raise ValueError(f"samples must be (n, d = {d}), got {tuple(samples.shape)}")
            if not bool(torch.isfinite(samples).all()):
                raise ValueError("samples contain NaN or inf")
        self.samples = samples
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([d]),
                         validate_args=validate_args)

    @classmethod
    def from_samples(cls, samples: Tensor, estimator: object | None = None) -> "EstimatedDistribution":
        """Fit the bundled estimator (or ``estimator``) on samples (n, d), e.g. a previous posterior;
        ``sample()`` then draws from the fitted estimate (the stacked blend) or resamples the samples.

        Example:
            >>> import torch, disco_plug
            >>> draws = torch.randn(512, 3)  # e.g. a previous posterior's draws
            >>> prior = EstimatedDistribution.from_samples(draws)
            >>> prior.log_prob(torch.zeros(3)).shape, prior.sample((2,)).shape
            (torch.Size([]), torch.Size([2, 3]))
        """
        if estimator is None:
            import disco_plug

            estimator = disco_plug.load()
        if not isinstance(samples, Tensor):  # numpy draws: Pyro models run in torch's default dtype
            samples = torch.as_tensor(samples).to(torch.get_default_dtype())
        fitted = estimator.fit(samples)
        return cls(fitted, samples=None if samples_exactly(fitted) else samples)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return log_density(self.density, value)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        count = math.prod(shape[:-1])
        with torch.no_grad():
            if self.samples is not None:
                index = torch.randint(self.samples.shape[0], (count,), device=self.samples.device)
                draws = self.samples[index]
            elif samples_exactly(self.density):  # in the fitted samples' type: torch keeps its dtype
                draws = self.density.sample(count)
                if not isinstance(draws, Tensor):  # fitted on numpy or JAX: Pyro models run in the default dtype
                    draws = torch.as_tensor(draws).to(torch.get_default_dtype())
            elif callable(getattr(self.density, "sample", None)):
                draws = self.density.sample(count)
            else:
                raise NotImplementedError(
                    "this density cannot be sampled: pass samples=(n, d) (e.g. the context the "
                    "estimator was fitted on) or use EstimatedDistribution.from_samples")
        return draws.reshape(shape)


def sample_constrained(name: str, prior: EstimatedDistribution, joint: object) -> dict[str, Tensor]:
    """Inside a Pyro model: draw the unconstrained vector ``name`` from ``prior`` and return each variable
    of ``joint`` (a `disco_plug.integrations.arviz.JointSample`, e.g. from ``az.from_pyro(mcmc)``) in its
    constrained space, recorded as a ``pyro.deterministic`` site of its own name.

    Fit the prior once, outside the model: ``prior = EstimatedDistribution.from_samples(joint.draws)``.
    No Jacobian term is needed: the density lives on the unconstrained vector, where it was estimated.
    """
    import pyro

    if tuple(prior.event_shape) != (joint.dim,):
        raise ValueError(f"the prior has event shape {tuple(prior.event_shape)}, the joint sample D = {joint.dim} "
                         f"({joint.names})")
    z = pyro.sample(name, prior)
    return {v: pyro.deterministic(v, x) for v, x in joint.constrain(z, torch).items()}


class LangevinKernel(MCMCKernel):
    """Unadjusted Langevin (ULA) and Metropolis-adjusted Langevin (MALA; Roberts & Tweedie 1996,
    "Exponential convergence of Langevin distributions and their discrete approximations").

    Proposal z' = z - eps * grad U(z) + sqrt(2 eps) * xi. MALA accepts it with the
    Metropolis-Hastings ratio and, during warmup, adapts eps by Robbins-Monro towards
    ``target_accept_prob`` (0.574 is optimal for MALA, Roberts & Rosenthal 1998). ULA always moves
    and keeps eps fixed. Give either a Pyro ``model`` (sites are unconstrained automatically) or a
    ``potential_fn`` with ``MCMC(initial_params=...)``, as for ``HMC``.

    Example:
        >>> import torch
        >>> from pyro.infer import MCMC
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> kernel = LangevinKernel(potential_fn=potential_fn(gmm), step_size=0.5)
        >>> mcmc = MCMC(kernel, num_samples=50, warmup_steps=50,
        ...             initial_params={"x": torch.zeros(2)}, disable_progbar=True)
        >>> mcmc.run()
        >>> mcmc.get_samples()["x"].shape
        torch.Size([50, 2])
    """

    def __init__(self, model: Callable | None = None, potential_fn: Callable | None = None, *,
                 step_size: float = 0.1, adjust: bool = True, adapt_step_size: bool = True,
                 target_accept_prob: float = 0.574, transforms: dict | None = None,
                 max_plate_nesting: int | None = None, init_strategy: Callable = init_to_uniform) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of `model` and `potential_fn`")
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        self.model = model
        self.potential_fn = potential_fn
        self.step_size = float(step_size)
        self.adjust = adjust
        self.adapt_step_size = adapt_step_size and adjust
        self.target_accept_prob = target_accept_prob
        # MCMC reads kernel.transforms; with a bare potential there is nothing to transform.
        self.transforms = transforms if model is not None else {}
        self._max_plate_nesting = max_plate_nesting
        self._init_strategy = init_strategy
        self._initial_params: dict[str, Tensor] | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._t = 0
        self._accepted = 0
        self._warmup_steps = 0
        self._cache: tuple[dict[str, Tensor], dict[str, Tensor], Tensor] | None = None

    @property
    def initial_params(self) -> dict[str, Tensor]:
        if self._initial_params is None:
            raise ValueError("no initial parameters: pass MCMC(initial_params=...) with potential_fn")
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict[str, Tensor]) -> None:
        self._initial_params = params

    def setup(self, warmup_steps: int, *args, **kwargs) -> None:
        self._reset_counters()
        self._warmup_steps = warmup_steps
        if self.model is not None:
            init, self.potential_fn, self.transforms, _ = initialize_model(
                self.model, args, kwargs, transforms=self.transforms,
                max_plate_nesting=self._max_plate_nesting, init_strategy=self._init_strategy,
                initial_params=self._initial_params)
            if self._initial_params is None:
                self._initial_params = init

    def _energy(self, z: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        if self._cache is not None and all(self._cache[0][k] is z[k] for k in z):
            return self._cache
        z = {k: v.detach() for k, v in z.items()}
        grads, energy = potential_grad(self.potential_fn, z)
        return z, grads, energy

    def sample(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        z, grads, energy = self._energy(params)
        eps = self.step_size
        noise = {k: torch.randn_like(v) for k, v in z.items()}
        proposal = {k: z[k] - eps * grads[k] + math.sqrt(2 * eps) * noise[k] for k in z}
        new_grads, new_energy = potential_grad(self.potential_fn, proposal)
        if self.adjust:
            # log q(z | z') - log q(z' | z) for q(b | a) = N(b; a - eps grad U(a), 2 eps I)
            back = sum(((z[k] - proposal[k] + eps * new_grads[k]) ** 2).sum() for k in z)
            forth = sum((noise[k] ** 2).sum() for k in z) * (2 * eps)
            log_ratio = energy - new_energy - (back - forth) / (4 * eps)
            accept_prob = float(torch.clamp(log_ratio, max=0.0).exp().nan_to_num(0.0))
            accept = bool(torch.rand(()) < accept_prob)
        else:
            accept_prob, accept = 1.0, bool(torch.isfinite(new_energy))
        if self._t < self._warmup_steps and self.adapt_step_size:
            rate = (self._t + 1) ** -0.6
            self.step_size = float(math.exp(math.log(eps) + rate * (accept_prob - self.target_accept_prob)))
        elif self._t >= self._warmup_steps:
            self._accepted += accept
        self._t += 1
        if accept:
            self._cache = (proposal, new_grads, new_energy)
            return proposal
        self._cache = (z, grads, energy)
        return z

    def _sampling_steps(self) -> int:
        return max(self._t - self._warmup_steps, 0)

    def logging(self) -> OrderedDict:
        return OrderedDict([("step size", f"{self.step_size:.2e}"),
                            ("acc. rate", f"{self._accepted / max(self._sampling_steps(), 1):.3f}")])

    def diagnostics(self) -> dict[str, float]:
        return {"step_size": self.step_size,
                "acceptance rate": self._accepted / max(self._sampling_steps(), 1)}
