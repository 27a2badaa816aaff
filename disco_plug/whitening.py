"""Affine whitening of a context set (DiScoFormer report, arXiv 2511.05924, "affine equivariance").

Center on the context mean and multiply by A = (Cov + eps I)^(-1/2); the network runs on whitened
points, then log p = log p_w + log|det A| and score = score_w A (A is symmetric). Translation and
scaling of the data become exact symmetries; eps is relative to the covariance scale so that scaling
stays exact.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Whitening", "fit_whitening"]

# Smallest eigenvalue relative to the largest below which the samples are called degenerate.
_DEGENERATE_RATIO = 1e-10


class Whitening(NamedTuple):
    mean: Tensor  # (B, d)
    matrix: Tensor  # (B, d, d) symmetric A
    log_det: Tensor  # (B,) log|det A|

    def apply(self, x: Tensor) -> Tensor:
        """Whiten points (B, m, d)."""
        return (x - self.mean[:, None]) @ self.matrix

    def data_axes(self) -> Tensor:
        """(B, d, d) matrix taking whitened points y to the data's own standardized coordinates,
        z = y @ data_axes with z_j = (x_j - mean_j) / sd_j (what a diagonal-covariance fit uses)."""
        inv = torch.linalg.inv(self.matrix)  # y @ inv = x - mean
        sd = torch.linalg.vector_norm(inv, dim=-2)  # (B, d): sd_j^2 = (inv^T inv)_jj = (A^-2)_jj
        return inv / sd[:, None, :]

    def raw_frame(self) -> Tensor:
        """(B, d, d) matrix taking whitened points y to the data's own coordinates up to one scale,
        z = y @ raw_frame = (x - mean) / s with s^2 the mean variance of the features: the frame in which
        a rotation of the data is a rotation of z (where mixture.fit_mixtures fits common principal axes)."""
        inv = torch.linalg.inv(self.matrix)  # y @ inv = x - mean
        scale = inv.square().sum((-2, -1)).div(inv.shape[-1]).sqrt()  # (B,): s^2 = trace(A^-2) / d
        return inv / scale[:, None, None]

    def score_back(self, score_w: Tensor) -> Tensor:
        """Map a whitened-space score (B, m, d) back to data space: s = s_w A^T."""
        return score_w @ self.matrix.transpose(-1, -2)


def fit_whitening(x: Tensor, eps: float = 1e-6, *, noise_var: float = 0.0) -> Whitening:
    """Whitening of contexts x (B, n, d), computed in float64 and returned in float64.

    noise_var: whiten for the distribution of x + sigma * N(0, I) instead, sigma^2 = noise_var (its
    covariance is the samples' plus noise_var * I; the mean is unchanged)."""
    x64 = x.to(torch.float64)
    b, n, d = x64.shape
    mean = x64.mean(1)
    xc = x64 - mean[:, None]
    cov = xc.transpose(-1, -2) @ xc / n  # (B, d, d)
    evals, evecs = torch.linalg.eigh(cov)
    top = evals[:, -1:].clamp_min(torch.finfo(torch.float64).tiny)
    if not bool((evals[:, :1] > _DEGENERATE_RATIO * top).all()):
        raise ValueError(
            "the samples are degenerate: their covariance is singular (a constant column, duplicated "
            "points, or points on a lower-dimensional subspace), so they cannot be whitened")
    evals = evals + eps * evals.mean(-1, keepdim=True) + noise_var
    matrix = (evecs * evals.rsqrt()[:, None]) @ evecs.transpose(-1, -2)
    return Whitening(mean, matrix, -0.5 * torch.log(evals).sum(-1))
