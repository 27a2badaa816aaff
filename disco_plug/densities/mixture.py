"""Gaussian and Student-t mixtures as densities: evaluation, convolution and sampling (no fitting).

A `Mixture` is the parameter tuple of a batch of mixtures, padded to K components; `MixtureDensity` is
the same as a `Density`. The EM fit that produces them is disco_plug.fit.em. Student-t components are
those of robust mixture modelling (Peel & McLachlan 2000); a Gaussian component has nu = GAUSSIAN_DOF.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .base import Density, as_covariance

__all__ = ["GAUSSIAN_DOF", "Mixture", "MixtureDensity", "convolve_mixture", "mixture_log_density_and_score",
           "mixture_log_weights", "precision_form", "sample_mixture", "stack_mixtures"]

_LOG_2PI = math.log(2.0 * math.pi)
GAUSSIAN_DOF = 1e6  # degrees of freedom that stand for a Gaussian component (exact Gaussian formulas)


class Mixture(NamedTuple):
    """A batch of fitted mixtures, padded to K components (unused ones have log_norm = -inf).

    log w_k + log p_k(y) = log_norm_k + kernel(delta_k(y), nu_k) with the Mahalanobis distance
    delta_k(y) = |(y - mu_k) @ prec_chol_k|^2, the precision prec_chol_k @ prec_chol_k^T, and
    kernel = -delta / 2 for a Gaussian (nu_k = GAUSSIAN_DOF), -(nu + d) / 2 log(1 + delta / nu) for a
    Student-t component."""

    log_norm: Tensor  # (B, K): log w_k + log det(prec_chol_k) + log normalizer of p_k
    means: Tensor  # (B, K, d)
    prec_chol: Tensor  # (B, K, d, d), upper triangular
    dof: Tensor  # (B, K) degrees of freedom nu_k (GAUSSIAN_DOF: Gaussian)
    params: Tensor | None = None  # (B,) free parameters of the fit (fit_mixtures sets it), for AIC-style checks

    @property
    def components(self) -> Tensor:
        """(B,) number of components in use."""
        return torch.isfinite(self.log_norm).sum(-1)


def _log_const(dof: Tensor, d: int) -> Tensor:
    """Log normalizer of a unit-scale d-dimensional Student-t with dof degrees of freedom (Gaussian at
    GAUSSIAN_DOF)."""
    t = torch.lgamma((dof + d) / 2) - torch.lgamma(dof / 2) - 0.5 * d * torch.log(dof * math.pi)
    return torch.where(dof >= GAUSSIAN_DOF, torch.full_like(dof, -0.5 * d * _LOG_2PI), t)


def _kernel(delta: Tensor, dof: Tensor, d: int) -> Tensor:
    """log of the unnormalized density at Mahalanobis distance delta (both branches stay finite)."""
    return torch.where(dof >= GAUSSIAN_DOF, -0.5 * delta, -0.5 * (dof + d) * torch.log1p(delta / dof))


def _scale_weight(delta: Tensor, dof: Tensor, d: int) -> Tensor:
    """u = (nu + d) / (nu + delta): the E-step's scale weight and the factor on a t component's score."""
    return torch.where(dof >= GAUSSIAN_DOF, torch.ones_like(delta), (dof + d) / (dof + delta))


def _pad(t: Tensor, k: int, value: float) -> Tensor:
    """Pad dimension 1 to k entries with `value`; covariances (B, K, d, d) are padded with identities."""
    pad = k - t.shape[1]
    if pad == 0:
        return t
    if t.ndim == 4:  # (B, K, d, d) covariances: identities keep the Cholesky of unused slots defined
        fill = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device).expand(t.shape[0], pad, -1, -1)
    else:
        fill = torch.full((t.shape[0], pad, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, fill], 1)


def precision_form(log_w: Tensor, cov: Tensor, dof: Tensor) -> tuple[Tensor, Tensor]:
    """The upper precision Cholesky factors (B, K, d, d) and log norms (B, K) of components with log
    weights log_w (B, K), scale matrices cov (B, K, d, d) and degrees of freedom dof (B, K): a Mixture's
    prec_chol and log_norm."""
    d = cov.shape[-1]
    chol = torch.linalg.cholesky(cov)  # (B, K, d, d) lower
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    prec_chol = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).transpose(-1, -2)
    log_norm = log_w - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) + _log_const(dof, d)
    return prec_chol, log_norm


def _rows(mix: Mixture, rows: slice) -> Mixture:
    """The mixtures of some contexts of a batch."""
    return Mixture(*(None if t is None else t[rows] for t in mix))


def _pad_mixture(mix: Mixture, k: int) -> Mixture:
    """mix with k component slots (unused slots: -inf weight, unit precision, Gaussian)."""
    return Mixture(_pad(mix.log_norm, k, -math.inf), _pad(mix.means, k, 0.0), _pad(mix.prec_chol, k, 1.0),
                   _pad(mix.dof, k, GAUSSIAN_DOF), mix.params)


def _padded(mix: Mixture, other: Mixture) -> Mixture:
    """mix with as many component slots as other (or its own, if more)."""
    return _pad_mixture(mix, max(mix.means.shape[1], other.means.shape[1]))


def stack_mixtures(mixtures: list[Mixture]) -> Mixture:
    """Mixtures (B, K_i) as one batch (sum of B, max K_i), in order, padded with unused slots (no params)."""
    k = max(mix.means.shape[1] for mix in mixtures)
    padded = [_pad_mixture(mix, k) for mix in mixtures]
    return Mixture(*(torch.cat(parts) for parts in zip(*(mix[:4] for mix in padded))))


def mixture_log_weights(mix: Mixture) -> Tensor:
    """The log mixing weights (B, K) of fitted mixtures (-inf on unused slots)."""
    d = mix.means.shape[-1]
    log_det_prec_chol = torch.log(torch.diagonal(mix.prec_chol, dim1=-2, dim2=-1)).sum(-1)
    return mix.log_norm - log_det_prec_chol - _log_const(mix.dof, d)


def sample_mixture(mix: Mixture, counts: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
    """Draw counts[b] i.i.d. points from mixture b, as a list of (counts[b], d) tensors in the mixture's
    dtype: a component by its weight, then mu_k + e @ prec_chol_k^-1 / sqrt(g), e ~ N(0, I) and
    g ~ chi2(nu_k) / nu_k for a Student-t component (g = 1 for a Gaussian one)."""
    d = mix.means.shape[-1]
    dtype, device = mix.means.dtype, mix.means.device
    gen_device = generator.device if generator is not None else device
    weights = mixture_log_weights(mix).exp()  # (B, K)
    out = []
    for b, num in enumerate(counts.tolist()):
        if num == 0:
            out.append(mix.means.new_zeros(0, d))
            continue
        comp = torch.multinomial(weights[b].cpu(), num, replacement=True, generator=generator).to(device)  # (num,)
        eps = torch.randn(num, d, generator=generator, dtype=dtype, device=gen_device).to(device)
        upper = mix.prec_chol[b, comp]  # (num, d, d)
        v = torch.linalg.solve_triangular(upper, eps[:, None], upper=True, left=False)[:, 0]  # eps @ upper^-1
        dof = mix.dof[b, comp]
        gaussian = dof >= GAUSSIAN_DOF
        nu = torch.where(gaussian, torch.full_like(dof, 2.0), dof)  # any finite value where unused
        g = 2 * torch._standard_gamma((nu / 2).cpu(), generator=generator).to(device) / nu  # chi2(nu) / nu
        g = torch.where(gaussian, torch.ones_like(g), g)
        out.append(mix.means[b, comp] + v / g.sqrt()[:, None])
    return out


def convolve_mixture(mix: Mixture, matrix: Tensor, noise_cov: Tensor) -> Mixture:
    """The mixture of y = x @ matrix + e with x ~ mix and e ~ N(0, noise_cov) independent: component k
    moves to mean mu_k @ matrix and scale matrix^T S_k matrix + noise_cov. matrix and noise_cov are
    (B, d, d) (noise_cov symmetric positive semi-definite).

    Exact for Gaussian components (a Gaussian convolved with a Gaussian). A Student-t convolved with a
    Gaussian is not a Student-t; it is approximated by the t with the same nu and the scale matrix grown
    by noise_cov: the core widens as the Gaussian's does and the polynomial tails, which noise does not
    change, are kept."""
    precision = mix.prec_chol @ mix.prec_chol.transpose(-1, -2)  # (B, K, d, d)
    scale = torch.cholesky_inverse(torch.linalg.cholesky(precision))
    log_w = mixture_log_weights(mix)  # -inf stays on unused slots
    m = matrix.to(scale.dtype)[:, None]
    scale = m.transpose(-1, -2) @ scale @ m + noise_cov.to(scale.dtype)[:, None]
    scale = 0.5 * (scale + scale.transpose(-1, -2))
    means = mix.means @ m[:, 0]
    prec_chol, log_norm = precision_form(log_w, scale, mix.dof)
    return Mixture(log_norm, means, prec_chol, mix.dof, mix.params)


_MIXTURE_CHUNK = 1 << 21  # numbers per (m, K, d) intermediate: ~16 MB in float64, whatever m, K and d


def mixture_log_density_and_score(mix: Mixture, y: Tensor, *,
                                  with_distance: bool = False) -> tuple[Tensor, ...]:
    """log p(y) (B, m) and its gradient (B, m, d) of fitted mixtures at points y (B, m, d), in y's dtype;
    with_distance also returns each point's Mahalanobis distance to its nearest component (B, m)."""
    b, m, d = y.shape
    per_chunk = max(1, _MIXTURE_CHUNK // max(1, b * mix.means.shape[1] * d))
    if m > per_chunk:
        parts = [mixture_log_density_and_score(mix, y[:, i:i + per_chunk], with_distance=with_distance)
                 for i in range(0, m, per_chunk)]
        return tuple(torch.cat(t, 1) for t in zip(*parts))
    y64 = y.to(mix.means.dtype)
    # All components at once (one batched product instead of a Python loop over K): whitened offsets
    # z = (y - mu_k) L_k (B, m, K, d), their squared norms, and the per-component scores -u_k z L_k^T.
    z = torch.einsum("bmkd,bkde->bmke", y64[:, :, None, :] - mix.means[:, None], mix.prec_chol)
    delta, dof = (z * z).sum(-1), mix.dof[:, None, :]  # (B, m, K), (B, 1, K)
    joint_t = mix.log_norm[:, None, :] + _kernel(delta, dof, d)
    grads = -_scale_weight(delta, dof, d)[..., None] * torch.einsum("bmke,bkde->bmkd", z, mix.prec_chol)
    log_p = torch.logsumexp(joint_t, -1)
    resp = torch.softmax(joint_t, -1)
    score = (resp[..., None] * grads).sum(-2)
    if with_distance:
        used = torch.isfinite(mix.log_norm)[:, None, :]
        nearest = torch.where(used, delta, torch.full_like(delta, math.inf)).amin(-1)
        return log_p.to(y.dtype), score.to(y.dtype), nearest.to(y.dtype)
    return log_p.to(y.dtype), score.to(y.dtype)


class MixtureDensity(Density):
    """A batch of fitted Gaussian / Student-t mixtures (a `Mixture`) as a `Density`."""

    def __init__(self, mixture: Mixture) -> None:
        self.mixture = mixture
        self._stacked_with: tuple | None = None  # evaluate_together's stacked group (ids, Mixture, members)

    @property
    def batch(self) -> int:
        return self.mixture.means.shape[0]

    @property
    def dim(self) -> int:
        return self.mixture.means.shape[-1]

    def _like(self) -> Tensor:
        return self.mixture.means

    def __repr__(self) -> str:
        used = torch.isfinite(self.mixture.log_norm[0])
        heavy = int((self.mixture.dof[0][used] < GAUSSIAN_DOF).sum())
        return f"MixtureDensity(K={int(used.sum())}, d={self.dim}{f', {heavy} Student-t' if heavy else ''})"

    def log_density_and_score(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return mixture_log_density_and_score(self.mixture, y)

    def convolve(self, cov: Tensor | float, matrix: Tensor | None = None) -> "MixtureDensity":
        """Exact for Gaussian components; Student-t ones keep nu with the noise added to their scale
        (convolve_mixture)."""
        noise = as_covariance(cov, self.mixture.means)
        if matrix is None:
            matrix = torch.eye(self.dim, dtype=noise.dtype, device=noise.device).expand_as(noise)
        return MixtureDensity(convolve_mixture(self.mixture, matrix, noise))

    def draw(self, normal: Tensor, pick: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draws at the picked positions from sample_mixture (which makes its own normal draws)."""
        out = torch.zeros_like(normal)
        for i, points in enumerate(sample_mixture(self.mixture, pick.sum(1), generator)):
            out[i, pick[i]] = points.to(out.dtype)
        return out

    @classmethod
    def evaluate_together(cls, densities: Sequence[Density], y: Tensor) -> tuple[Tensor, Tensor]:
        """All K mixtures in one pass, stacked as extra contexts padded to one number of components."""
        b, k = y.shape[0], len(densities)
        if k == 1:
            log_p, score = mixture_log_density_and_score(densities[0].mixture, y)
            return log_p[..., None], score[..., None, :]
        key = tuple(id(dens) for dens in densities[1:])
        cached = densities[0]._stacked_with
        if cached is None or cached[0] != key:  # the stacked parameters, kept on the group's first mixture
            densities[0]._stacked_with = cached = (key, stack_mixtures([dens.mixture for dens in densities]), densities)
        stacked = cached[1]
        log_p, score = mixture_log_density_and_score(stacked, y.repeat(k, 1, 1))
        return log_p.unflatten(0, (k, b)).permute(1, 2, 0), score.unflatten(0, (k, b)).permute(1, 2, 0, 3)
