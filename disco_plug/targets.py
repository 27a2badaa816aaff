"""Closed-form test distributions beyond Gaussian mixtures (the report's out-of-distribution checks):
product Laplace and multivariate Student-t, each with exact log-density, score and sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Laplace", "StudentT"]


@dataclass(frozen=True)
class Laplace:
    """Product of d independent Laplace(0, 1): log p = -|x|_1 - d log 2, score = -sign(x)."""

    dim: int

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return -y.abs().sum(-1) - self.dim * math.log(2.0), -torch.sign(y)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs())


@dataclass(frozen=True)
class StudentT:
    """Multivariate Student-t with nu degrees of freedom and identity scale:
    log p = c - (nu + d)/2 log(1 + |x|^2 / nu), score = -(nu + d) x / (nu + |x|^2)."""

    dim: int
    nu: float = 3.0

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        d, nu = self.dim, self.nu
        const = math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
        sq = (y * y).sum(-1)
        return const - 0.5 * (nu + d) * torch.log1p(sq / nu), -(nu + d) * y / (nu + sq)[..., None]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chi2 = torch._standard_gamma(torch.full((n,), self.nu / 2, dtype=torch.float64), generator=generator) * 2
        return z / torch.sqrt(chi2 / self.nu)[:, None]
