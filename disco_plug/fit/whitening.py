"""Affine whitening of a context set (DiScoFormer report, arXiv 2511.05924, "affine equivariance").

Center on the context mean and multiply by A = S^-1 (R + eps I)^(-1/2), with S the diagonal of the
columns' standard deviations and R their correlation matrix: whitened points y = (x - mean) A have
covariance I up to the ridge. Estimates run on whitened points, then log p = log p_w + log|det A| and
score = score_w A^T. Translation and scaling of the data become exact symmetries, per column too up to a
rotation of the whitened frame: the ridge is relative to each column's variance, and every check and
factorization works on the correlation matrix, so columns recorded in units 1e12 apart are whitened as
accurately as standardized ones (factorizing the raw covariance of such columns loses the small ones).
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
    matrix: Tensor  # (B, d, d) A (not symmetric unless the columns share one scale)
    log_det: Tensor  # (B,) log|det A|

    def apply(self, x: Tensor) -> Tensor:
        """Whiten points (B, m, d)."""
        return (x - self.mean[:, None]) @ self.matrix

    def _unwhiten(self) -> tuple[Tensor, Tensor]:
        """A^-1 (B, d, d), with y @ A^-1 = x - mean, and the columns' standard deviations (B, d) it
        implies (up to the ridge): sd_j^2 = (A^-T A^-1)_jj, the squared norm of column j of A^-1."""
        inv = torch.linalg.inv(self.matrix)
        return inv, torch.linalg.vector_norm(inv, dim=-2)

    def data_axes(self) -> Tensor:
        """(B, d, d) matrix taking whitened points y to the data's own standardized coordinates,
        z = y @ data_axes with z_j = (x_j - mean_j) / sd_j (what a diagonal-covariance fit uses)."""
        inv, sd = self._unwhiten()
        return inv / sd[:, None, :]

    def raw_frame(self) -> Tensor:
        """(B, d, d) matrix taking whitened points y to the data's own coordinates up to one scale,
        z = y @ raw_frame = (x - mean) / s with s^2 the mean variance of the features: the frame in which
        a rotation of the data is a rotation of z (where mixture.fit_mixtures fits common principal axes).
        In this frame columns recorded in very different units differ by those units (see
        frame_is_well_scaled)."""
        inv, sd = self._unwhiten()
        scale = sd.square().mean(-1).sqrt()  # (B,): s^2 = trace(A^-T A^-1) / d, the mean variance
        return inv / scale[:, None, None]

    def frame_is_well_scaled(self, max_ratio: float = 1e4) -> bool:
        """Whether the columns' standard deviations are within max_ratio of each other in every context,
        so that raw_frame is well conditioned: beyond it a covariance mapped between the whitened and the
        raw frame loses positive definiteness in float64 (seen at ratios near 1e6 on scikit-learn's wine
        table with rescaled columns)."""
        _, sd = self._unwhiten()
        return bool((sd.amax(-1) <= max_ratio * sd.amin(-1)).all())

    def score_back(self, score_w: Tensor) -> Tensor:
        """Map a whitened-space score (B, m, d) back to data space: s = s_w A^T."""
        return score_w @ self.matrix.transpose(-1, -2)


def fit_whitening(x: Tensor, eps: float = 1e-6, *, noise_var: float = 0.0) -> Whitening:
    """Whitening of contexts x (B, n, d), computed in float64 and returned in float64.

    noise_var: whiten for the distribution of x + sigma * N(0, I) instead, sigma^2 = noise_var (its
    covariance is the samples' plus noise_var * I; the mean is unchanged).

    Raises ValueError when the correlation matrix is singular (its smallest eigenvalue below 1e-10 of its
    largest: columns that are linearly dependent), naming the columns involved."""
    x64 = x.to(torch.float64)
    b, n, d = x64.shape
    mean = x64.mean(1)
    sd = (x64 - mean[:, None]).std(1, correction=0)  # (B, d)
    if not bool((sd > 0).all()):
        raise ValueError("the samples are degenerate: a column is constant, so they cannot be whitened")
    z = (x64 - mean[:, None]) / sd[:, None]  # standardized: every factorization below is scale-free
    cov = z.transpose(-1, -2) @ z / n  # (B, d, d) the correlation matrix
    evals, evecs = torch.linalg.eigh(cov)
    if not bool((evals[:, :1] > _DEGENERATE_RATIO * evals[:, -1:]).all()):
        bad = int((evals[:, 0] <= _DEGENERATE_RATIO * evals[:, -1]).nonzero()[0])
        loading = evecs[bad, :, 0].abs()
        cols = (loading > 0.1 * loading.max()).nonzero().flatten().tolist()
        raise ValueError(
            f"the samples are degenerate: columns {cols} are linearly dependent (their correlation matrix "
            f"is singular: smallest eigenvalue {float(evals[bad, 0]):.2e}), so they cannot be whitened; "
            "drop one of them")
    if noise_var:  # the covariance of x + noise, sd^2 R + noise_var I, in the same standardized form
        full = cov * sd[:, :, None] * sd[:, None, :] + noise_var * torch.eye(d, dtype=x64.dtype, device=x64.device)
        sd = torch.diagonal(full, dim1=-2, dim2=-1).sqrt()
        cov = full / (sd[:, :, None] * sd[:, None, :])
        evals, evecs = torch.linalg.eigh(cov)
    evals = evals + eps  # ridge relative to each column's variance (the correlation matrix has mean eigenvalue 1)
    root = (evecs * evals.rsqrt()[:, None]) @ evecs.transpose(-1, -2)  # (R + eps I)^(-1/2), symmetric
    matrix = root / sd[:, :, None]  # S^-1 (R + eps I)^(-1/2)
    return Whitening(mean, matrix, -0.5 * torch.log(evals).sum(-1) - torch.log(sd).sum(-1))
