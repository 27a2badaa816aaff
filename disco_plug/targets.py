"""Closed-form test distributions beyond Gaussian mixtures, each with exact log-density, score and sampler:
the report's out-of-distribution checks (product Laplace, multivariate Student-t) and the shapes MCMC
meets (a curved banana, Neal's funnel, a bounded Beta product, two separated modes), with their modes'
log-density (`mode_log_prob`) for the spurious-mode checks of benchmarks/mcmc.py; and a time-dependent one,
the BKW solution of the Landau equation (benchmarks/landau.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Banana", "BetaProduct", "Bimodal", "Funnel", "LandauBKW", "Laplace", "StudentT"]


class _ExactDensity:
    """The density protocol of the package (disco_plug.integrations.Density): `dim` and
    log_density_and_score(y) for points (m, d), so an exact target plugs into every adapter and check that a
    fitted estimate does (the exact controls of benchmarks/mcmc.py)."""

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob_and_score(y)

    def log_density(self, y: Tensor) -> Tensor:
        return self.log_prob_and_score(y)[0]


@dataclass(frozen=True)
class Laplace(_ExactDensity):
    """Product of d independent Laplace(0, 1): log p = -|x|_1 - d log 2, score = -sign(x)."""

    dim: int

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return -y.abs().sum(-1) - self.dim * math.log(2.0), -torch.sign(y)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs())


@dataclass(frozen=True)
class StudentT(_ExactDensity):
    """Multivariate Student-t with nu degrees of freedom and identity scale:
    log p = c - (nu + d)/2 log(1 + |x|^2 / nu), score = -(nu + d) x / (nu + |x|^2)."""

    dim: int
    nu: float = 3.0

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        d, nu = self.dim, self.nu
        const = math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi)
        sq = (y * y).sum(-1)
        return const - 0.5 * (nu + d) * torch.log1p(sq / nu), -(nu + d) * y / (nu + sq)[..., None]

    def log_prob(self, y: Tensor) -> Tensor:
        return self.log_prob_and_score(y)[0]

    @property
    def mode_log_prob(self) -> float:
        return float(self.log_prob(torch.zeros(1, self.dim, dtype=torch.float64))[0])

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        chi2 = torch._standard_gamma(torch.full((n,), self.nu / 2, dtype=torch.float64), generator=generator) * 2
        return z / torch.sqrt(chi2 / self.nu)[:, None]


def _with_score(log_prob: Callable[[Tensor], Tensor], y: Tensor) -> tuple[Tensor, Tensor]:
    """log p and its gradient by autograd (float64)."""
    with torch.enable_grad():
        y = y.detach().to(torch.float64).requires_grad_(True)
        lp = log_prob(y)
        (score,) = torch.autograd.grad(lp.sum(), y)
    return lp.detach(), score


@dataclass(frozen=True)
class Banana(_ExactDensity):
    """Twisted Gaussian (Haario, Saksman & Tamminen 1999): x0 ~ N(0, s0^2), x1 | x0 ~ N(b (x0^2 - s0^2), s1^2)."""

    s0: float = 1.2
    b: float = 0.35
    s1: float = 0.5
    dim: int = 2

    def log_prob(self, y: Tensor) -> Tensor:
        x0, x1 = y[..., 0], y[..., 1]
        r = x1 - self.b * (x0 * x0 - self.s0**2)
        return (-0.5 * (x0 / self.s0) ** 2 - 0.5 * (r / self.s1) ** 2 - math.log(2 * math.pi * self.s0 * self.s1))

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return _with_score(self.log_prob, y)

    @property
    def mode_log_prob(self) -> float:
        return -math.log(2 * math.pi * self.s0 * self.s1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        e = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x0 = self.s0 * e[:, 0]
        return torch.stack([x0, self.b * (x0 * x0 - self.s0**2) + self.s1 * e[:, 1]], -1)


@dataclass(frozen=True)
class Funnel(_ExactDensity):
    """Neal's (2003) funnel: v ~ N(0, sv^2), x_i | v ~ N(0, exp(v)) for the other d - 1 coordinates."""

    dim: int = 3
    sv: float = 1.0

    def log_prob(self, y: Tensor) -> Tensor:
        v, x = y[..., 0], y[..., 1:]
        k = self.dim - 1
        return (-0.5 * (v / self.sv) ** 2 - 0.5 * math.log(2 * math.pi * self.sv**2)
                - 0.5 * (x * x).sum(-1) * torch.exp(-v) - 0.5 * k * (math.log(2 * math.pi) + v))

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return _with_score(self.log_prob, y)

    @property
    def mode_log_prob(self) -> float:
        v = -(self.dim - 1) * self.sv**2 / 2  # the maximum, at x = 0
        return float(self.log_prob(torch.tensor([[v] + [0.0] * (self.dim - 1)], dtype=torch.float64))[0])

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        e = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        v = self.sv * e[:, :1]
        return torch.cat([v, torch.exp(v / 2) * e[:, 1:]], -1)


@dataclass(frozen=True)
class BetaProduct(_ExactDensity):
    """Product of d independent Beta(a, b) on the unit cube (a bounded support; log p = -inf outside)."""

    dim: int = 3
    a: float = 2.0
    b: float = 5.0

    def log_prob(self, y: Tensor) -> Tensor:
        inside = ((y > 0) & (y < 1)).all(-1)
        yc = y.clamp(1e-12, 1 - 1e-12)
        log_beta = math.lgamma(self.a) + math.lgamma(self.b) - math.lgamma(self.a + self.b)
        lp = ((self.a - 1) * torch.log(yc) + (self.b - 1) * torch.log1p(-yc) - log_beta).sum(-1)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return _with_score(self.log_prob, y)

    @property
    def mode_log_prob(self) -> float:
        m = (self.a - 1) / (self.a + self.b - 2)
        return float(self.log_prob(torch.full((1, self.dim), m, dtype=torch.float64))[0])

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        ga = torch._standard_gamma(torch.full((n, self.dim), self.a, dtype=torch.float64), generator=generator)
        gb = torch._standard_gamma(torch.full((n, self.dim), self.b, dtype=torch.float64), generator=generator)
        return ga / (ga + gb)


@dataclass(frozen=True)
class Bimodal(_ExactDensity):
    """0.5 N(-m e_0, I) + 0.5 N(m e_0, I) in d dimensions: two separated modes."""

    dim: int = 6
    m: float = 2.5

    def log_prob(self, y: Tensor) -> Tensor:
        shift = torch.zeros(self.dim, dtype=torch.float64)
        shift[0] = self.m
        sq = torch.stack([((y - shift) ** 2).sum(-1), ((y + shift) ** 2).sum(-1)], -1)
        return torch.logsumexp(-0.5 * sq, -1) - math.log(2.0) - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return _with_score(self.log_prob, y)

    @property
    def mode_log_prob(self) -> float:
        t = torch.linspace(0.0, self.m, 2001, dtype=torch.float64)  # the maxima lie on the axis, at |x0| <= m
        y = torch.zeros(len(t), self.dim, dtype=torch.float64)
        y[:, 0] = t
        return float(self.log_prob(y).max())

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        x = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        sign = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
        x[:, 0] += sign * self.m
        return x


@dataclass(frozen=True)
class LandauBKW:
    """The BKW solution of the spatially homogeneous Landau equation with Maxwell molecules, in d = 2 or 3
    (Bobylev; as in Carrillo, Hu, Wang & Wu 2020, "A particle method for the homogeneous Landau equation"):
    df/dt = div_v int A(v - w) (f(w) grad f(v) - f(v) grad f(w)) dw, A(z) = C (|z|^2 I - z z^T). With
    K(t) = 1 - c exp(-rate t), f(t) = N(0, K I) (a + b |v|^2 / (d K)), b = d (1 - K) / (2 K), a = 1 - b:
    d = 2: C = 1/16, rate = 1/8, c = 1/2, from t0 = 0; d = 3: C = 1/24, rate = 1/6, c = 1, from t0 = 5.5
    (where a >= 0). Density, score, fourth moment and exact draws at time t; mean 0, unit temperature.
    (tests/test_targets_landau.py checks by autograd that it solves the equation.)"""

    d: int

    def __post_init__(self) -> None:
        if self.d not in (2, 3):
            raise ValueError(f"the BKW solution is given here for d = 2 or 3, got d={self.d}")

    @property
    def C(self) -> float:
        """The collision kernel's constant."""
        return 1 / 16 if self.d == 2 else 1 / 24

    @property
    def rate(self) -> float:
        return 1 / 8 if self.d == 2 else 1 / 6

    @property
    def c(self) -> float:
        return 0.5 if self.d == 2 else 1.0

    @property
    def t0(self) -> float:
        """The earliest time at which f is a density."""
        return 0.0 if self.d == 2 else 5.5

    def K(self, t: float) -> float:
        return 1.0 - self.c * math.exp(-self.rate * t)

    def _weights(self, t: float) -> tuple[float, float]:
        """f = a N(0, K I) + b |v|^2 N(0, K I) / (d K): the weights a, b (a + b = 1)."""
        K, d = self.K(t), self.d
        b = d * (1 - K) / (2 * K)
        return 1.0 - b, b

    def log_density(self, t: float, v: Tensor) -> Tensor:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        r2 = (v * v).sum(-1)
        return -0.5 * d * math.log(2 * math.pi * K) - r2 / (2 * K) + torch.log(a + b * r2 / (d * K))

    def score(self, t: float, v: Tensor) -> Tensor:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        r2 = (v * v).sum(-1, keepdim=True)
        return -v / K + (2 * b / (d * K)) * v / (a + b * r2 / (d * K))

    def entropy(self, t: float, points: int = 20001) -> float:
        """The entropy -int f log f at time t (nats; it grows with t, the H-theorem), by the trapezoid rule on
        the radius: f is radial, so the integral is |S^(d-1)| int_0^R r^(d-1) f(r) log f(r) dr, R = 14 sqrt(K)
        (where f is below 1e-40 of its peak)."""
        K, d = self.K(t), self.d
        r = torch.linspace(0.0, 14.0 * math.sqrt(K), points, dtype=torch.float64)
        v = torch.zeros(points, d, dtype=torch.float64)
        v[:, 0] = r
        log_f = self.log_density(t, v)
        sphere = 2 * math.pi ** (d / 2) / math.gamma(d / 2)
        f_log_f = torch.where(torch.isfinite(log_f), log_f.exp() * log_f, torch.zeros_like(log_f))  # 0 log 0 = 0
        return -float(torch.trapezoid(sphere * r ** (d - 1) * f_log_f, r))

    def fourth_moment(self, t: float) -> float:
        K, d = self.K(t), self.d
        a, b = self._weights(t)
        m4, m6 = d * (d + 2) * K**2, d * (d + 2) * (d + 4) * K**3  # E|v|^4, E|v|^6 under N(0, K I)
        return a * m4 + b * m6 / (d * K)

    def sample(self, t: float, n: int, generator: torch.Generator) -> Tensor:
        K, d = self.K(t), self.d
        a, _ = self._weights(t)
        direction = torch.randn(n, d, generator=generator, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True)
        chi_d = torch.randn(n, d, generator=generator, dtype=torch.float64).square().sum(1)
        chi_d2 = chi_d + torch.randn(n, 2, generator=generator, dtype=torch.float64).square().sum(1)
        gaussian = torch.rand(n, generator=generator, dtype=torch.float64) < a
        r2 = K * torch.where(gaussian, chi_d, chi_d2)  # |v|^2 N(0, K I) / (d K) has |v|^2 ~ K chi2(d + 2)
        return direction * r2.sqrt()[:, None]
