"""A Gaussian density N(mean, cov): the whitened Gaussian fit, and a closed-form test density."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Density, as_covariance

__all__ = ["Gaussian", "standard_normal_log_density"]

_LOG_2PI = math.log(2.0 * math.pi)


def standard_normal_log_density(y: Tensor) -> Tensor:
    """log N(y; 0, I) for points y (..., d) (its score is -y)."""
    return -0.5 * (y * y).sum(-1) - 0.5 * y.shape[-1] * _LOG_2PI


class Gaussian(Density):
    """B Gaussians N(mean_b, cov_b) on R^d. `Gaussian.standard(B, d)` is N(0, I), the Gaussian fit of a
    whitened context (its covariance is I by construction), evaluated without a factorization.

    mean (B, d); chol (B, d, d): the lower Cholesky factor of cov, or None for cov = I."""

    def __init__(self, mean: Tensor, chol: Tensor | None = None) -> None:
        self.mean = mean
        self.chol = chol
        self._standard = False  # mean 0 and cov I (set by `standard`): no arithmetic on the mean

    @classmethod
    def standard(cls, batch: int, dim: int, like: Tensor) -> "Gaussian":
        g = cls(torch.zeros(batch, dim, dtype=like.dtype, device=like.device))
        g._standard = True
        return g

    @classmethod
    def from_covariance(cls, mean: Tensor, cov: Tensor) -> "Gaussian":
        return cls(mean, torch.linalg.cholesky(0.5 * (cov + cov.transpose(-1, -2))))

    @property
    def batch(self) -> int:
        return self.mean.shape[0]

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]

    def _like(self) -> Tensor:
        return self.mean

    def __repr__(self) -> str:
        return f"Gaussian(d={self.dim}{', N(0, I)' if self._standard else ''})"

    @property
    def covariance(self) -> Tensor:
        if self.chol is None:
            return torch.eye(self.dim, dtype=self.mean.dtype, device=self.mean.device).expand(self.batch, -1, -1)
        return self.chol @ self.chol.transpose(-1, -2)

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self._standard:  # N(0, I): the whitened Gaussian fit
            return standard_normal_log_density(y), -y
        diff = y - self.mean[:, None].to(y.dtype)
        if self.chol is None:
            return standard_normal_log_density(diff), -diff
        chol = self.chol.to(y.dtype)
        z = torch.linalg.solve_triangular(chol, diff.transpose(-1, -2), upper=False)  # (B, d, m): L^-1 (y - mu)
        score = -torch.linalg.solve_triangular(chol.transpose(-1, -2), z, upper=True).transpose(-1, -2)
        log_det = torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B,)
        return standard_normal_log_density(z.transpose(-1, -2)) - log_det[:, None], score

    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "Gaussian":
        """N(mean @ M, M^T cov_self M + cov): exact."""
        noise = as_covariance(cov, self.mean)
        own = self.covariance
        mean = self.mean
        if matrix is not None:
            m = matrix.to(own.dtype)
            own, mean = m.transpose(-1, -2) @ own @ m, (mean[:, None] @ m)[:, 0]
        return Gaussian.from_covariance(mean, own + noise)

    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.chol is None:
            return normal + self.mean[:, None].to(normal.dtype)
        return normal @ self.chol.to(normal.dtype).transpose(-1, -2) + self.mean[:, None].to(normal.dtype)
