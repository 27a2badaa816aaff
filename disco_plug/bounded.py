"""A fit of samples with bounded columns (`fit(samples, bounds=...)`): the estimate of the unconstrained
points z = f^-1(x) (disco_plug.support), carried back to the box by the change of variables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .support import Bounds
from .validation import ArraySpec, FitOfSamples, as_points

if TYPE_CHECKING:
    from .estimator import Estimator, FittedEstimator

__all__ = ["BoundedFit"]


class BoundedFit(FitOfSamples):
    """An estimator fitted to samples whose columns have known bounds.

    `unconstrained` is the ordinary fit (a FittedEstimator) of z = f^-1(x), each bounded column mapped to R
    (log for one bound, logit for two: disco_plug.support). Here its log-density and score are those of
    x: log p_x(x) = log p_z(z) - sum_j log|f_j'(z_j)|, a normalized density on the box that is zero
    outside it. Queries outside the bounds (or on one) get log p = -inf and a zero score, as
    scipy.stats' logpdf does off the support; a Metropolis step or NUTS (BlackJAX) rejects them, and
    Pyro's `EstimatedDistribution` declares the bounds as its `support`, so Pyro samples z. Samples
    (`sample`, any method) are drawn in z and mapped back, so they lie inside the bounds.

    The noised density p * N(0, sigma^2 I) (`convolved`, `score_fn`) is not available here: it is not
    zero outside the box, and is not the convolution of anything this fit holds.
    """

    def __init__(self, unconstrained: "FittedEstimator", bounds: Bounds, samples: Tensor, spec: ArraySpec,
                 names: list[str] | None = None) -> None:
        self.unconstrained = unconstrained
        self.bounds = bounds
        self.samples = samples  # (n, d) float64, the bounded points as given
        self._spec = spec
        self._names = names

    @classmethod
    def fit(cls, estimator: "Estimator", x: Tensor, spec: ArraySpec, bounds: Bounds,
            names: list[str] | None) -> "BoundedFit":
        """Checked, validated float64 samples x (n, d) inside `bounds` -> their bounded fit."""
        bounds.check(x, "samples")
        z = bounds.unconstrain(x)
        inner = estimator._fit_points(z, ArraySpec("torch", torch.float64, x.device, False), names, stacklevel=4)
        return cls(inner, bounds, x, spec, names)

    # -- the FittedEstimator interface the adapters and samplers use -------------------------------
    @property
    def estimator(self) -> "Estimator":
        return self.unconstrained.estimator

    def __repr__(self) -> str:
        return f"BoundedFit(n={self.n}, d={self.dim}, bounds {{{self.bounds.describe()}}}, device={self.device})"

    def _log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """float64 (m,) and (m, d) for validated float64 queries y (m, d); -inf and 0 outside the bounds."""
        inside = self.bounds.inside(y)
        log_p = torch.full((y.shape[0],), -torch.inf, dtype=torch.float64, device=y.device)
        score = torch.zeros_like(y)
        if bool(inside.any()):
            z = self.bounds.unconstrain(y[inside])
            log_p_z, score_z = self.unconstrained._log_density_and_score(z)
            log_p[inside], score[inside] = self.bounds.log_density_and_score(log_p_z, score_z, z)
        return log_p, score

    def log_density_and_score(self, queries: Any) -> tuple[Any, Any]:
        """log p (m,) and grad log p (m, d) at the queries; -inf and 0 outside the bounds."""
        y, spec = as_points(queries, "queries", max_dim=self.estimator.config.max_dim, dim=self.dim,
                            allow_single=True, device=self.device)
        log_p, score = self._log_density_and_score(y)
        return spec.restore(log_p, scalar_per_point=True), spec.restore(score, scalar_per_point=False)

    def log_density(self, queries: Any) -> Any:
        """log p at the queries (a normalized density on the box; -inf outside it)."""
        return self.log_density_and_score(queries)[0]

    def score(self, queries: Any) -> Any:
        """grad log p at the queries (0 outside the bounds)."""
        return self.log_density_and_score(queries)[1]

    def sample(self, num: int, *, method: str = "exact", **options: Any) -> Any:
        """`num` new points inside the bounds: FittedEstimator.sample (same methods and options) run on the
        unconstrained fit, mapped back."""
        z = self.unconstrained.sample(num, method=method, **options)
        return self._spec.restore(self.bounds.constrain(z), scalar_per_point=False)

    def normalization(self, num: int = 16384, **options: Any) -> tuple[float, float]:
        """The integral of the density over the box, with its standard error: by the change of variables it
        is the integral of the unconstrained fit's density over R^d (FittedEstimator.normalization)."""
        return self.unconstrained.normalization(num, **options)

    def update(self, samples: Any, **options: Any) -> "BoundedFit":
        """FittedEstimator.update of the unconstrained fit, from new samples inside the same bounds."""
        x, spec, _ = self.estimator._read_samples(samples, None, device=self.device)
        if x.shape[1] != self.dim:
            raise ValueError(f"samples have {x.shape[1]} columns; this fit has {self.dim}: use fit for a new set")
        self.bounds.check(x, "samples")
        inner = self.unconstrained.update(self.bounds.unconstrain(x), **options)
        return BoundedFit(inner, self.bounds, x, spec, self._names)

    def _unavailable(self, what: str) -> ValueError:
        return ValueError(f"{what} of a fit with bounds is not available (it would not vanish outside the bounds); "
                          "use .unconstrained for the estimate of the unconstrained points, or sample() with any method")

    def convolved(self, sigma: float) -> Any:
        raise self._unavailable("the noised density p * N(0, sigma^2 I)")

    def score_fn(self, x: Tensor, sigma: float = 0.0) -> Tensor:
        raise self._unavailable("score_fn (the score of p * N(0, sigma^2 I))")

    @property
    def noised(self) -> Any:
        raise self._unavailable("the noise-conditional score")

    def adapt(self, *args: Any, **kwargs: Any) -> "BoundedFit":
        """FittedEstimator.adapt of the unconstrained fit."""
        return BoundedFit(self.unconstrained.adapt(*args, **kwargs), self.bounds, self.samples, self._spec, self._names)
