"""PyMC adapters: an estimated density as a PyTensor Op and as a PyMC distribution.

Everything converts one call, ``density.log_density_and_score(y)``. `LogDensityOp` has two outputs,
the log-density head (PyMC's logp) and the score head, and its gradient is the score head times the
incoming gradient, so the ``logp`` and ``dlogp`` functions that ``pm.sample`` compiles for NUTS
(Hoffman & Gelman 2014, "The No-U-Turn Sampler") share one Op node after PyTensor's merge rewrite: one
torch call per leapfrog step gives both the value and the gradient. `EstimatedDistribution` wraps the
Op in ``pm.CustomDist``: a prior known through samples (e.g. a previous posterior), a likelihood
factor, with ``pm.sample_prior_predictive`` drawing from the estimate itself. `prior_from_idata` turns
an ``InferenceData`` posterior (constrained parameters included) into the next model's prior.

The Op runs its ``perform`` in Python under every linker PyMC uses by default (the C|Py VM); it has no
C, Numba or JAX implementation, so ``nuts_sampler="numpyro"``/``"blackjax"``/``"nutpie"`` do not apply
(use `disco_plug.integrations.blackjax` for JAX).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ._density import Density, as_density, evaluate, samples_exactly

try:
    import pymc as pm
    from pymc.distributions.shape_utils import rv_size_is_none
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType, grad_not_implemented
    from pytensor.graph.basic import Apply, Variable
    from pytensor.graph.op import Op
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("disco_plug.integrations.pymc needs pymc: pip install pymc") from err

__all__ = ["LogDensityOp", "logp_op", "EstimatedDistribution", "prior_from_idata"]


class LogDensityOp(Op):
    """PyTensor Op ``value (..., d) -> (log p (...), score (..., d))``, float64, one density call.

    The gradient of output 0 is the score head (not a derivative of the network); output 1 has no
    gradient (it would need the Hessian) and raises if one is asked for. Two Ops are equal when they
    wrap the same density object, so PyTensor merges the value and gradient computations of a graph.

    Example:
        >>> import numpy as np, pytensor, pytensor.tensor as pt, torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> x = pt.dvector("x")
        >>> log_p, score = LogDensityOp(gmm)(x)
        >>> f = pytensor.function([x], [log_p, pytensor.grad(log_p, x)])
        >>> [np.round(out, 4).tolist() for out in f(np.ones(2))]
        [-2.8379, [-1.0, -1.0]]
    """

    # PyMC's NUTS evaluates each iteration's starting point again, a point of the previous trajectory:
    # the last CACHE_SIZE points (a tree of depth 10) are answered without a density call.
    CACHE_SIZE = 1024

    def __init__(self, density: Density) -> None:
        self.density = as_density(density)
        self._cache: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    # -- identity: per density instance (a torch object cannot be a __props__ entry) -------------------
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.density is other.density  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), id(self.density)))

    def __str__(self) -> str:
        return f"{type(self).__name__}({type(self.density).__name__}, d={self.density.dim})"

    # -- graph -------------------------------------------------------------------------------------------
    def make_node(self, value: Any) -> Apply:
        value = pt.as_tensor_variable(value)
        d = self.density.dim
        if value.type.ndim == 0:
            raise ValueError(f"value must have last dimension d = {d}, got a scalar")
        if value.type.shape[-1] not in (None, d):
            raise ValueError(f"value must have last dimension d = {d}, got static shape {value.type.shape}")
        if value.type.dtype != "float64":
            if not value.type.dtype.startswith("float"):
                raise TypeError(f"value must be floating point, got {value.type.dtype}")
            value = pt.cast(value, "float64")
        log_p = pt.tensor(dtype="float64", shape=value.type.shape[:-1])
        score = pt.tensor(dtype="float64", shape=value.type.shape)
        return Apply(self, [value], [log_p, score])

    def perform(self, node: Apply, inputs: list[np.ndarray], output_storage: list[list[Any]]) -> None:
        (value,) = inputs
        value = np.ascontiguousarray(value, dtype=np.float64)
        key = (value.shape, value.tobytes())
        hit = self._cache.get(key)
        if hit is None:
            lp, sc = evaluate(self.density, torch.from_numpy(value.copy()))
            hit = (np.asarray(lp.numpy(), dtype=np.float64), np.asarray(sc.numpy(), dtype=np.float64))
            self._cache[key] = hit
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        output_storage[0][0] = hit[0].copy()
        output_storage[1][0] = hit[1].copy()

    def infer_shape(self, fgraph: Any, node: Apply, input_shapes: list[tuple]) -> list[tuple]:
        (shape,) = input_shapes
        return [tuple(shape[:-1]), tuple(shape)]

    def grad(self, inputs: list[Variable], output_grads: list[Variable]) -> list[Variable]:
        (value,) = inputs
        g_log_p, g_score = output_grads
        if not isinstance(g_score.type, DisconnectedType):
            return [grad_not_implemented(self, 0, value, "the gradient of the score output needs the "
                                                         "Hessian of the log-density, which is not available")]
        if isinstance(g_log_p.type, DisconnectedType):
            return [DisconnectedType()()]
        score = self(value)[1]
        return [g_log_p[..., None] * score]


def logp_op(density: Density) -> LogDensityOp:
    """The `LogDensityOp` of a fitted estimator, any `Density` or a GaussianMixture.

    Use output 0 in ``pm.Potential`` or a ``pm.CustomDist`` logp; its gradient is the score head.

    Example:
        >>> import numpy as np, pymc as pm, torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> with pm.Model() as model:
        ...     x = pm.Flat("x", shape=2)
        ...     _ = pm.Potential("estimate", logp_op(gmm)(x)[0])
        >>> float(np.round(model.compile_logp()({"x": np.zeros(2)}), 4))
        -1.8379
    """
    return LogDensityOp(density)



def _to_numpy(x: Any) -> np.ndarray:
    """float64 numpy copy of a torch tensor or array-like (numpy, JAX, lists)."""
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        if not x.is_floating_point():
            x = x.to(torch.float64)
        return x.numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _check_draws(draws: Any, d: int | None) -> np.ndarray:
    x = _to_numpy(draws)
    if x.ndim != 2 or x.shape[0] < 1 or (d is not None and x.shape[1] != d):
        want = "d" if d is None else f"d = {d}"
        raise ValueError(f"draws must be (n, {want}) with n >= 1, got shape {x.shape}")
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise ValueError(f"draws contain NaN or inf (row {int(np.flatnonzero(bad)[0])})")
    return x


_DEFINED = ("dist", "logp", "logcdf", "random", "support_point", "ndim_supp", "ndims_params", "signature",
            "dtype")


class EstimatedDistribution:
    """A PyMC distribution known through samples: the estimated density as logp, its score as gradient.

    ``EstimatedDistribution(name, draws)`` inside a ``pm.Model`` returns a vector random variable of
    shape (d,) (or ``size``/``shape``/``dims`` batches of it; keyword arguments go to
    ``pm.CustomDist``, e.g. ``observed=`` for a likelihood factor). ``EstimatedDistribution.dist(draws)``
    gives the unnamed variable, as for any PyMC distribution. The draws are fitted by
    ``estimator`` (default ``disco_plug.load()``), or an already fitted density is passed as ``fitted``.

    - logp: output 0 of `LogDensityOp` (one torch call gives value and gradient for NUTS).
    - random (``pm.sample_prior_predictive``, ``pm.draw``): draws from the estimate itself where the
      density can (a stacked fitted estimator's exact sampler, or ``fitted.sample(n, generator=...)``,
      seeded from PyMC's numpy rng), else resamples the draws (or a gated estimator's context).
    - support_point (NUTS's starting point before jitter): the mean of the draws.

    Parameters:
        name: the variable's name in the model.
        draws: (n, d) points, numpy or torch; may be None when ``fitted`` is given.
        estimator: an unfitted estimator with ``fit(draws)``; default ``disco_plug.load()``.
        fitted: a fitted estimator, any `Density`, or a GaussianMixture; then ``draws`` are only used
            for sampling and the starting point.

    Raises ValueError for draws that are not (n, d), contain NaN/inf (naming the row), or whose d
    differs from the fitted density's, and TypeError for a fitted object that is not a density.

    Example:
        >>> import numpy as np, pymc as pm
        >>> draws = np.random.default_rng(0).normal(size=(256, 2))  # e.g. a previous posterior
        >>> with pm.Model() as model:
        ...     theta = EstimatedDistribution("theta", draws)
        ...     _ = pm.Normal("y", theta.sum(), 1.0, observed=[0.3])
        >>> pm.draw(theta, random_seed=0).shape
        (2,)
    """

    def __new__(cls, name: str, draws: Any = None, *, estimator: Any = None, fitted: Any = None,
                **kwargs: Any) -> Variable:
        if not isinstance(name, str):
            raise TypeError(f"EstimatedDistribution needs a name first (use EstimatedDistribution.dist "
                            f"outside a model), got {type(name).__name__}")
        params, options = cls._custom_dist_args(draws, estimator, fitted, kwargs)
        return pm.CustomDist(name, *params, **options, **kwargs)

    @classmethod
    def dist(cls, draws: Any = None, *, estimator: Any = None, fitted: Any = None, **kwargs: Any) -> Variable:
        """The unnamed random variable, for use outside a model (``pm.draw``, ``pm.logp``) or inside others.

        Example:
            >>> import numpy as np, pymc as pm, torch
            >>> from disco_plug.gmm import GaussianMixture
            >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
            >>> x = EstimatedDistribution.dist(fitted=gmm, size=3)
            >>> pm.draw(x, random_seed=1).shape, pm.logp(x, np.zeros((3, 2))).eval().shape
            ((3, 2), (3,))
        """
        params, options = cls._custom_dist_args(draws, estimator, fitted, kwargs)
        return pm.CustomDist.dist(*params, **options, **kwargs)

    @classmethod
    def _custom_dist_args(cls, draws: Any, estimator: Any, fitted: Any,
                          kwargs: dict[str, Any]) -> tuple[tuple[Variable, ...], dict[str, Any]]:
        """The distribution parameters and the keyword arguments of pm.CustomDist that define it."""
        fixed = sorted(set(kwargs) & set(_DEFINED))
        if fixed:
            raise TypeError(f"EstimatedDistribution defines {', '.join(fixed)} itself; pass only "
                            f"pm.CustomDist options such as shape, size, dims or observed")
        density, pool = cls._density_and_pool(draws, estimator, fitted)
        d = density.dim
        mean = cls._center(density, pool)
        op = LogDensityOp(density)
        sampler = cls._sampler(density, pool)

        def logp(value: Variable, center: Variable) -> Variable:
            return op(value)[0]

        def random(center: np.ndarray, rng: np.random.Generator | None = None,
                   size: tuple[int, ...] | None = None) -> np.ndarray:
            rng = np.random.default_rng() if rng is None else rng
            batch = () if size is None else tuple(int(s) for s in np.atleast_1d(size))
            count = math.prod(batch)
            if count == 0:
                return np.zeros((*batch, d))
            return sampler(rng, count).reshape(*batch, d)

        def support_point(rv: Variable, size: Variable, center: Variable) -> Variable:
            # From size and the center only: a graph through rv.shape would make PyMC draw the variable.
            if rv_size_is_none(size):
                return center
            return pt.full(pt.concatenate([size, [d]]), center)

        # The center is the one distribution parameter: a (d,) constant whose core shape gives the
        # support shape (d,) under the signature "(d)->(d)", so size/shape/dims batch it as usual.
        return (pt.constant(mean, name="center"),), dict(
            logp=logp, random=random, support_point=support_point, signature="(d)->(d)", dtype="float64")

    @staticmethod
    def _density_and_pool(draws: Any, estimator: Any, fitted: Any) -> tuple[Density, np.ndarray | None]:
        if fitted is not None:
            if estimator is not None:
                raise ValueError("give either fitted= or estimator=, not both")
            density = as_density(fitted)
            pool = None if draws is None else _check_draws(draws, density.dim)
            return density, pool
        if draws is None:
            raise ValueError("EstimatedDistribution needs draws (n, d) to fit, or fitted= a fitted density")
        pool = _check_draws(draws, None)
        if estimator is None:
            import disco_plug

            estimator = disco_plug.load()
        fit_on = draws if isinstance(draws, Tensor) else pool  # torch draws keep their dtype and device
        return as_density(estimator.fit(fit_on)), pool

    @staticmethod
    def _center(density: Density, pool: np.ndarray | None) -> np.ndarray:
        """The starting point: the draws' mean, else the fitted context's, else of 1024 seeded draws."""
        if pool is None and getattr(density, "samples", None) is not None:
            pool = _to_numpy(density.samples)
        if pool is None and callable(getattr(density, "sample", None)):
            try:
                pool = _to_numpy(density.sample(1024, generator=torch.Generator().manual_seed(0)))
            except (ValueError, TypeError, NotImplementedError):
                pool = None
        if pool is None:
            return np.zeros(density.dim)
        return pool.reshape(-1, density.dim).mean(0)

    @staticmethod
    def _sampler(density: Density, pool: np.ndarray | None) -> Callable[[np.random.Generator, int], np.ndarray]:
        """(rng, count) -> (count, d) float64 draws from the estimate, or resampled from the pool."""
        is_fitted_estimator = getattr(density, "estimator", None) is not None
        if samples_exactly(density) or (not is_fitted_estimator and callable(getattr(density, "sample", None))):
            def from_estimate(rng: np.random.Generator, count: int) -> np.ndarray:
                generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
                with torch.no_grad():
                    return _to_numpy(density.sample(count, generator=generator))

            return from_estimate
        if pool is None and is_fitted_estimator and getattr(density, "samples", None) is not None:
            pool = _to_numpy(density.samples)  # a gated estimator has no exact sampler: its context
        if pool is None:
            def cannot(rng: np.random.Generator, count: int) -> np.ndarray:
                raise NotImplementedError(
                    f"this density ({type(density).__name__}) cannot be sampled: pass draws=(n, d) to "
                    f"resample, or a density with sample(n, generator=...)")

            return cannot

        def resample(rng: np.random.Generator, count: int) -> np.ndarray:
            return pool[rng.integers(pool.shape[0], size=count)]

        return resample


def prior_from_idata(idata: Any, var_names: Sequence[str] | None = None, *, model: Any = None,
                     transforms: Mapping[str, Any] | None = None, name: str = "trace_prior_",
                     estimator: Any = None, group: str = "posterior") -> dict[str, Variable]:
    """Yesterday's posterior as today's prior, inside a ``pm.Model()``: one estimated joint density.

    The chosen variables' draws are stacked into one unconstrained joint sample
    (`disco_plug.integrations.arviz.from_inference_data`: a positive scale as its log, a probability as
    its logit, with the transforms read from the previous ``model`` or given as ``transforms``), the
    bundled estimator (or ``estimator``) is fitted to it once, and a vector variable ``name`` of that
    density is added to the current model. Each variable comes back as a ``pm.Deterministic`` of the
    same name and shape, in its constrained space. No Jacobian term is needed: the density lives on the
    unconstrained vector, where it was estimated. This mirrors pymc-extras' ``prior_from_idata``,
    which places a multivariate normal there instead (losing skew and tails).

    Returns:
        {variable: its constrained Deterministic}, in the order of ``var_names``.

    Example:
        >>> import arviz as az, numpy as np, pymc as pm
        >>> rng = np.random.default_rng(0)
        >>> idata = az.from_dict(posterior={"mu": rng.normal(size=(2, 200)),
        ...                                 "sigma": rng.lognormal(-1, 0.3, size=(2, 200))})
        >>> with pm.Model() as model:
        ...     prior = prior_from_idata(idata, transforms={"sigma": "log"})
        ...     _ = pm.Normal("y", prior["mu"], prior["sigma"], observed=[0.1, -0.2])
        >>> sorted(prior), model["trace_prior_"].type.shape
        (['mu', 'sigma'], (2,))
    """
    from .arviz import from_inference_data

    joint = from_inference_data(idata, var_names, transforms=transforms, model=model, group=group)
    z = EstimatedDistribution(name, joint.draws, estimator=estimator, shape=(joint.dim,))
    values = joint.constrain(z, pt)
    return {v: pm.Deterministic(v, values[v]) for v in values}
