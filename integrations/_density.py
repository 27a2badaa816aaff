"""The one protocol every adapter speaks: a density with a log-density head and a score head.

A *density* is anything with ``dim`` and ``log_density_and_score(y) -> (log p (m,), score (m, d))``
for query points y (m, d), e.g. a fitted DiScoFormer estimator (``disco_plug.load().fit(X)``). The
adapters in this folder (Pyro, BlackJAX) are thin converters from that one call; the diffusers hook
speaks the noise-conditional ``score_fn(x, sigma)`` convention instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from disco_plug.gmm import GaussianMixture

__all__ = ["Density", "GaussianMixtureDensity", "as_density", "evaluate", "samples_exactly"]


@runtime_checkable
class Density(Protocol):
    """A log-density and its score at query points, in one call."""

    @property
    def dim(self) -> int: ...

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class GaussianMixtureDensity:
    """An exact Gaussian mixture (B = 1) behind the `Density` protocol: the oracle of the tests.

    Example:
        >>> import torch
        >>> from disco_plug.gmm import GaussianMixture
        >>> gmm = GaussianMixture.from_components([1.0], torch.zeros(1, 2), torch.ones(1, 2))
        >>> log_p, score = GaussianMixtureDensity(gmm).log_density_and_score(torch.ones(3, 2))
        >>> score[0].tolist()
        [-1.0, -1.0]
    """

    mixture: GaussianMixture

    def __post_init__(self) -> None:
        if self.mixture.batch != 1:
            raise ValueError(f"GaussianMixtureDensity needs a single mixture (B = 1), got B = {self.mixture.batch}")

    @property
    def dim(self) -> int:
        return self.mixture.dim

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.mixture.log_prob_and_score(y)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws (n, d)."""
        return self.mixture.sample(n, generator=generator)[0]


def as_density(obj: object) -> Density:
    """Accept a `Density` (e.g. a fitted estimator) or a single `GaussianMixture`."""
    if isinstance(obj, GaussianMixture):
        return GaussianMixtureDensity(obj)
    if not isinstance(obj, Density):
        raise TypeError(f"expected a density with `dim` and `log_density_and_score(y)` (e.g. "
                        f"`disco_plug.load().fit(X)`) or a GaussianMixture, got {type(obj).__name__}")
    return obj


def evaluate(density: Density, y: Tensor) -> tuple[Tensor, Tensor]:
    """log p and score at points y (..., d), checked on the way in and out.

    Returns (log p (...), score (..., d)) in y's dtype and device. log p = -inf is a point where the density
    is zero: outside a bounded density's support (a BoundedFit's box), or at an infinite coordinate (every
    density vanishes there, as scipy.stats' logpdf says; a float32 sampler's unconstrained step can
    overflow a bounded column's exp), with a zero score. Raises ValueError naming the problem for a
    wrong last dimension or NaN points, and for a density that returns NaN, +inf or a non-finite score.
    """
    d = density.dim
    if y.ndim == 0 or y.shape[-1] != d:
        raise ValueError(f"points must have last dimension d = {d}, got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise TypeError(f"points must be floating point, got {y.dtype}")
    if bool(torch.isnan(y).any()):
        raise ValueError("points contain NaN or inf (NaN: the sampler diverged or was given bad values)")
    lead = y.shape[:-1]
    flat = y.detach().reshape(-1, d)
    finite = torch.isfinite(flat).all(-1)
    log_p = torch.full(finite.shape, -torch.inf, dtype=y.dtype, device=y.device)
    score = torch.zeros_like(flat)
    if bool(finite.any()):
        lp, s = density.log_density_and_score(flat if bool(finite.all()) else flat[finite])
        log_p[finite] = torch.as_tensor(lp).to(dtype=y.dtype, device=y.device)
        score[finite] = torch.as_tensor(s).to(dtype=y.dtype, device=y.device)
    log_p, score = log_p.reshape(lead), score.reshape(*lead, d)
    # log p = -inf is a point outside the density's support (a BoundedFit's bounds), as scipy.stats says it
    if bool(torch.isnan(log_p).any()) or bool((log_p == torch.inf).any()) or not bool(torch.isfinite(score).all()):
        raise ValueError("the density returned NaN or inf at finite points")
    return log_p, score


def samples_exactly(density: object) -> bool:
    """Whether density is a fitted estimator whose `sample` draws exactly from the estimate (the stacked blend)."""
    estimator = getattr(density, "estimator", None)
    return getattr(getattr(estimator, "config", None), "blend", None) == "stacked"
