"""Batched Gaussian mixtures with exact log-density and score.

The training and test distributions of DiScoFormer (tech report arXiv 2511.05924, section on training
data): 1-10 components, means U[-3, 3]^d, diagonal variances U[0.2, 1]^d, then a random rotation.
Everything is a closed form, so these mixtures are also the oracles of the test suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianMixture", "random_gmm", "random_rotation"]

_LOG_2PI = math.log(2.0 * math.pi)


def random_rotation(batch: int, dim: int, *, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Haar-distributed orthogonal matrices (B, d, d): QR of a Gaussian matrix with the sign fix of
    Mezzadri (2007), "How to generate random matrices from the classical compact groups"."""
    g = torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64, device=device)
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs[..., None, :]).to(dtype)


@dataclass(frozen=True)
class GaussianMixture:
    """A batch of B Gaussian mixtures in d dimensions with K components each.

    Component k of mixture b is N(means[b, k], R_b diag(variances[b, k]) R_b^T): one rotation per
    mixture, shared by its components (the report's random-rotation augmentation).

    Points are (B, m, d) for a batch of mixtures. A single mixture (B = 1) also accepts points of any
    shape (..., d), which is what samplers pass.
    """

    log_weights: Tensor  # (B, K), normalized
    means: Tensor  # (B, K, d)
    variances: Tensor  # (B, K, d), in the rotated frame
    rotation: Tensor  # (B, d, d), orthogonal

    def __post_init__(self) -> None:
        b, k, d = self.means.shape
        if self.log_weights.shape != (b, k) or self.variances.shape != (b, k, d):
            raise ValueError(f"inconsistent mixture shapes: log_weights {tuple(self.log_weights.shape)}, "
                             f"means {tuple(self.means.shape)}, variances {tuple(self.variances.shape)}")
        if self.rotation.shape != (b, d, d):
            raise ValueError(f"rotation must be (B, d, d) = {(b, d, d)}, got {tuple(self.rotation.shape)}")
        if not bool((self.variances > 0).all()):
            raise ValueError("mixture variances must be positive")

    @property
    def batch(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @classmethod
    def from_components(cls, weights: Tensor, means: Tensor, variances: Tensor,
                        rotation: Tensor | None = None) -> "GaussianMixture":
        """One mixture from (K,) weights, (K, d) means, (K, d) variances and an optional (d, d) rotation."""
        means = torch.as_tensor(means)
        dtype = means.dtype if means.is_floating_point() else torch.get_default_dtype()
        means = means.to(dtype)
        weights = torch.as_tensor(weights, dtype=dtype, device=means.device)
        variances = torch.as_tensor(variances, dtype=dtype, device=means.device)
        d = means.shape[-1]
        if rotation is None:
            rotation = torch.eye(d, dtype=dtype, device=means.device)
        rotation = torch.as_tensor(rotation, dtype=dtype, device=means.device)
        if not bool((weights > 0).all()):
            raise ValueError("mixture weights must be positive")
        log_w = torch.log(weights / weights.sum())
        return cls(log_w[None], means[None], variances[None], rotation[None])

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "GaussianMixture":
        return GaussianMixture(*(t.to(device=device, dtype=dtype) for t in
                                 (self.log_weights, self.means, self.variances, self.rotation)))

    def __getitem__(self, index: int | slice) -> "GaussianMixture":
        """Select mixtures along the batch dimension (an int keeps a batch of one)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return GaussianMixture(self.log_weights[index], self.means[index], self.variances[index],
                               self.rotation[index])

    def convolve(self, sigma: float | Tensor) -> "GaussianMixture":
        """The mixture of p * N(0, sigma^2 I): every component's variances grow by sigma^2.

        sigma is a float or a (B,) tensor. Exact because R diag(v) R^T + s^2 I = R diag(v + s^2) R^T."""
        s2 = torch.as_tensor(sigma, dtype=self.variances.dtype, device=self.variances.device) ** 2
        s2 = s2.reshape(-1, 1, 1) if s2.ndim == 1 else s2
        return GaussianMixture(self.log_weights, self.means, self.variances + s2, self.rotation)

    def _as_batched(self, y: Tensor) -> tuple[Tensor, tuple[int, ...] | None]:
        if y.shape[-1] != self.dim:
            raise ValueError(f"points have dimension {y.shape[-1]}, the mixture has {self.dim}")
        if self.batch == 1 and not (y.ndim == 3 and y.shape[0] == 1):
            lead = tuple(y.shape[:-1])
            return y.reshape(1, -1, self.dim), lead
        if y.ndim != 3 or y.shape[0] != self.batch:
            raise ValueError(f"points must be (B={self.batch}, m, d), got {tuple(y.shape)}")
        return y, None

    def log_prob_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Exact log p(y) and grad_y log p(y); computed in float64, returned in y's dtype."""
        yb, lead = self._as_batched(y)
        f64 = [t.to(torch.float64) for t in (self.log_weights, self.means, self.variances, self.rotation)]
        log_w, means, var, rot = f64
        z = (yb.to(torch.float64)[:, :, None, :] - means[:, None]) @ rot[:, None]  # (B, m, K, d) frame coords
        log_comp = -0.5 * ((z * z / var[:, None]).sum(-1) + torch.log(var).sum(-1)[:, None] + self.dim * _LOG_2PI)
        joint = log_w[:, None] + log_comp  # (B, m, K)
        log_p = torch.logsumexp(joint, dim=-1)
        resp = torch.softmax(joint, dim=-1)  # (B, m, K)
        score_frame = -(resp[..., None] * z / var[:, None]).sum(-2)  # (B, m, d)
        score = score_frame @ rot.transpose(-1, -2)[:, None][:, 0]
        log_p, score = log_p.to(y.dtype), score.to(y.dtype)
        if lead is not None:
            return log_p.reshape(lead), score.reshape(*lead, self.dim)
        return log_p, score

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The package's density protocol (disco_plug.integrations.Density): log_prob_and_score."""
        return self.log_prob_and_score(y)

    def log_prob(self, y: Tensor) -> Tensor:
        return self.log_prob_and_score(y)[0]

    def score(self, y: Tensor) -> Tensor:
        return self.log_prob_and_score(y)[1]

    def score_fn(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """Score of p * N(0, sigma^2 I) at x (..., d): the `score_fn(x, sigma)` convention of the
        samplers. Only for a single mixture (B = 1); sigma must be a scalar."""
        if self.batch != 1:
            raise ValueError("score_fn needs a single mixture (B = 1); index the batch first")
        sigma = float(torch.as_tensor(sigma).reshape(-1)[0]) if torch.as_tensor(sigma).numel() == 1 else sigma
        if not isinstance(sigma, float):
            raise ValueError("score_fn takes a scalar sigma")
        return (self.convolve(sigma) if sigma > 0 else self).score(x)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               return_components: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """n i.i.d. points from every mixture: (B, n, d); with return_components also the component
        each point was drawn from (B, n) (labels, e.g. for oracle estimators)."""
        b, k, d = self.means.shape
        comp = torch.multinomial(self.log_weights.exp().to(torch.float64), n, replacement=True,
                                 generator=generator)  # (B, n)
        eps = torch.randn(b, n, d, generator=generator, dtype=torch.float64, device=self.means.device)
        idx = comp[..., None].expand(b, n, d)
        std = torch.gather(self.variances.to(torch.float64), 1, idx).sqrt()
        mu = torch.gather(self.means.to(torch.float64), 1, idx)
        x = (mu + (std * eps) @ self.rotation.to(torch.float64).transpose(-1, -2)).to(self.means.dtype)
        return (x, comp) if return_components else x


def random_gmm(batch: int, dim: int, *, generator: torch.Generator | None = None,
               components: tuple[int, int] = (1, 10), mean_range: float = 3.0,
               variance_range: tuple[float, float] = (0.2, 1.0), rotate: bool = True,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> GaussianMixture:
    """Draw B mixtures from the report's meta-distribution.

    Components are uniform on [components[0], components[1]] per mixture (unused slots get weight
    zero, i.e. log-weight -inf), mixture weights are Dirichlet(1), means U[-mean_range, mean_range]^d,
    variances U[variance_range]^d, and each mixture gets a Haar random rotation.
    """
    lo, hi = components
    if not 1 <= lo <= hi:
        raise ValueError(f"components must satisfy 1 <= lo <= hi, got {components}")
    opts = dict(dtype=torch.float64, device=device)
    counts = torch.randint(lo, hi + 1, (batch,), generator=generator, device=device)
    active = torch.arange(hi, device=device)[None] < counts[:, None]  # (B, K)
    w = -torch.log(torch.rand(batch, hi, generator=generator, **opts).clamp_min(1e-12))  # Dirichlet(1)
    w = torch.where(active, w, torch.zeros_like(w))
    log_w = torch.log(w / w.sum(-1, keepdim=True))
    means = (2 * torch.rand(batch, hi, dim, generator=generator, **opts) - 1) * mean_range
    v_lo, v_hi = variance_range
    var = v_lo + (v_hi - v_lo) * torch.rand(batch, hi, dim, generator=generator, **opts)
    rot = (random_rotation(batch, dim, generator=generator, dtype=torch.float64, device=device) if rotate
           else torch.eye(dim, **opts).expand(batch, dim, dim).clone())
    return GaussianMixture(log_w.to(dtype), means.to(dtype), var.to(dtype), rot.to(dtype))
