"""The density protocol: what every estimate and test density of the package answers.

A `Density` is a batch of B densities on R^d, one per context, evaluated at points (B, m, d) (scipy's
`gaussian_kde` is the model: a density object that knows its covariance and returns a new object for a
convolution). Every density of the package is one: the whitened Gaussian fit (`Gaussian`), a Gaussian
KDE (`KernelDensity`), a Gaussian or Student-t mixture (`MixtureDensity`), and their stacked blend
(`StackedDensity`), so each can be built, queried, convolved and sampled alone, without a network.

These are the batched densities of a fit, in its whitened frame. What users and the framework adapters
query is the unbatched protocol of disco_plug.integrations (`dim` and `log_density_and_score(y)` for points
(m, d) in data space), which a FittedEstimator speaks: it whitens the queries, asks its StackedDensity
(`fitted.density`) and maps the answer back with the whitening's Jacobian.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Density", "as_covariance"]


def as_covariance(cov: Tensor | float, like: Tensor) -> Tensor:
    """A noise covariance as a (B, d, d) tensor: a float s means s I; a (B, d, d) tensor is taken as is."""
    if isinstance(cov, Tensor) and cov.ndim == 3:
        return cov.to(like.dtype)
    eye = torch.eye(like.shape[-1], dtype=like.dtype, device=like.device)
    return float(cov) * eye.expand(like.shape[0], -1, -1)


class Density(ABC):
    """B densities on R^d (one per context of a batch).

    log_density_and_score(y) gives log p (B, m) and its exact gradient grad log p (B, m, d) at points
    y (B, m, d); convolve(cov, matrix) the density of x @ matrix + e, x ~ p, e ~ N(0, cov) independent
    (matrix None: the identity; cov a float: cov * I); sample(num) num i.i.d. draws (B, num, d)."""

    @property
    @abstractmethod
    def batch(self) -> int:
        """B, the number of densities."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """d."""

    @abstractmethod
    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """log p (B, m) and grad log p (B, m, d) at y (B, m, d)."""

    @abstractmethod
    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "Density":
        """The density of x @ matrix + e with x ~ self and e ~ N(0, cov)."""

    @abstractmethod
    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draws (B, num, d) at the positions where pick (B, num) is True (anything elsewhere), given
        standard normal draws `normal` (B, num, d) for the densities that transform one; any other
        randomness comes from `generator`. What a blend of densities calls to share one normal draw."""

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """num i.i.d. draws (B, num, d) from each density."""
        like = self._like()
        gen_dev = generator.device if generator is not None else like.device
        normal = torch.randn(self.batch, num, self.dim, generator=generator, dtype=like.dtype,
                             device=gen_dev).to(like.device)
        return self.draw(normal, torch.ones(self.batch, num, dtype=torch.bool, device=like.device), generator)

    def log_density(self, y: Tensor) -> Tensor:
        return self.log_density_and_score(y)[0]

    def score(self, y: Tensor) -> Tensor:
        return self.log_density_and_score(y)[1]

    @abstractmethod
    def _like(self) -> Tensor:
        """A tensor of the density's dtype and device."""

    @classmethod
    def evaluate_together(cls, densities: Sequence["Density"], y: Tensor) -> tuple[Tensor, Tensor]:
        """Log-densities (B, m, K) and scores (B, m, K, d) of K densities of this class at y; subclasses
        share work between them where they can (one distance matrix for KDEs of the same centres)."""
        parts = [d.log_density_and_score(y) for d in densities]
        return torch.stack([p[0] for p in parts], -1), torch.stack([p[1] for p in parts], -2)
