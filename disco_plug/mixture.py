"""A Gaussian-mixture fit of the context by EM, grown by splitting: the network's parametric skip.

One EM iteration for a Gaussian mixture is two softmax attentions (points over components for the
responsibilities, components over points for the means and covariances): the slot-attention view of
soft clustering (Locatello et al. 2020, "Object-Centric Learning with Slot Attention"). The network
gets the fitted mixture's log-density and score as one more gated skip next to the KDE ones, so it can
start from a model that a transformer would otherwise have to learn to emulate.

Algorithm (Dempster, Laird & Rubin 1977 for EM; mixture splitting as in Ueda et al. 2000, "SMEM
algorithm for mixture models", and the binary splitting of Linde, Buzo & Gray 1980):
- K = 1 is the Gaussian fit. Growing K -> K + 1 splits the component with the largest weighted
  principal variance along its principal axis (mu +- sqrt(lambda) v / 2), then runs `iters` EM steps.
- Covariances are shrunk towards the pooled within-component covariance with `prior` pseudo-points
  (a conjugate-prior MAP estimate), plus a floor, so small components in high d stay well posed.
- The number of components is chosen per context by a penalized likelihood: -2 log L + penalty * p,
  where p counts weights, means and the covariances' effective degrees of freedom (shrinkage lowers them).
  penalty = log n is BIC (Schwarz 1978); penalty = 2 is AIC (Akaike 1974).
- The selected mixture gets `final_iters` more EM steps.

Deterministic and free of random draws: the same set of points gives the same fit in any order.
Everything is batched over B contexts; memory is O(B n d) (components are looped over).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Mixture", "fit_mixture", "fit_mixtures", "mixture_log_density_and_score"]

_LOG_2PI = math.log(2.0 * math.pi)
_VAR_FLOOR = 1e-4  # covariance floor in whitened units (the context's total covariance is I)


class Mixture(NamedTuple):
    """A batch of fitted mixtures, padded to K components (unused ones have log_norm = -inf).

    log N_k(y) + log w_k = log_norm_k - |(y - mu_k) @ prec_chol_k|^2 / 2, and the precision is
    prec_chol_k @ prec_chol_k^T."""

    log_norm: Tensor  # (B, K): log w_k + log det(prec_chol_k) - d/2 log 2 pi
    means: Tensor  # (B, K, d)
    prec_chol: Tensor  # (B, K, d, d), upper triangular

    @property
    def components(self) -> Tensor:
        """(B,) number of components in use."""
        return torch.isfinite(self.log_norm).sum(-1)


def _joint(x: Tensor, log_w: Tensor, means: Tensor, cov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """log w_k + log N(x_i; mu_k, cov_k) as (B, n, K), with the precision Cholesky factors and log norms."""
    d = x.shape[-1]
    chol = torch.linalg.cholesky(cov)  # (B, K, d, d) lower
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    prec_chol = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False).transpose(-1, -2)
    log_norm = log_w - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1) - 0.5 * d * _LOG_2PI
    joint = torch.stack([log_norm[:, k, None] - 0.5 * (((x - means[:, k, None]) @ prec_chol[:, k]) ** 2).sum(-1)
                         for k in range(means.shape[1])], dim=-1)
    return joint, prec_chol, log_norm


def _m_step(x: Tensor, resp: Tensor, active: Tensor, prior: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Weights, means, shrunk covariances and their effective covariance parameters per context."""
    b, n, d = x.shape
    counts = resp.sum(1)  # (B, K)
    safe = counts.clamp_min(1e-10)
    means = (resp.transpose(1, 2) @ x) / safe[..., None]  # (B, K, d)
    scatter = torch.stack([((resp[:, :, k, None] * (x - means[:, k, None])).transpose(1, 2)
                            @ (x - means[:, k, None])) for k in range(means.shape[1])], dim=1)  # (B, K, d, d)
    pooled = scatter.sum(1) / n  # within-component covariance
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    shrink = counts / (counts + prior)  # (B, K): weight of the component's own scatter
    cov = (scatter + prior * pooled[:, None]) / (counts + prior)[..., None, None] + _VAR_FLOOR * eye
    cov_dof = (shrink * active).sum(-1) * d * (d + 1) / 2
    log_w = torch.where(active, torch.log(safe / n), torch.full_like(safe, -math.inf))
    return log_w, means, cov, cov_dof


def _em(x: Tensor, log_w: Tensor, means: Tensor, cov: Tensor, active: Tensor, prior: float,
        iters: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """`iters` EM steps; returns the parameters, the effective covariance dof and log-likelihood (B,)."""
    cov_dof = torch.zeros_like(log_w[:, 0])
    for _ in range(iters):
        joint, _, _ = _joint(x, log_w, means, cov)
        resp = torch.softmax(joint, dim=-1)
        log_w, means, cov, cov_dof = _m_step(x, resp, active, prior)
    joint, _, _ = _joint(x, log_w, means, cov)
    return log_w, means, cov, cov_dof, torch.logsumexp(joint, dim=-1).sum(-1)


def _split(log_w: Tensor, means: Tensor, cov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split, in every context, the component with the largest weight x principal variance."""
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    lam, v = evals[..., -1], evecs[..., -1]  # (B, K), (B, K, d)
    pick = torch.argmax(log_w + torch.log(lam), dim=-1)  # (B,)
    rows = torch.arange(means.shape[0], device=means.device)
    offset = 0.5 * lam[rows, pick].sqrt()[:, None] * v[rows, pick]  # (B, d); the sign of v is irrelevant
    half = log_w[rows, pick] - math.log(2.0)
    log_w, means = log_w.clone(), means.clone()
    log_w[rows, pick] = half
    new_mean = means[rows, pick] - offset
    means[rows, pick] = means[rows, pick] + offset
    return (torch.cat([log_w, half[:, None]], 1), torch.cat([means, new_mean[:, None]], 1),
            torch.cat([cov, cov[rows, pick][:, None]], 1))


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


def fit_mixtures(x: Tensor, penalties: tuple[float, ...] = (1.0,), max_components: int = 10, *,
                 iters: int = 8, final_iters: int = 12, prior: float | None = None) -> tuple[Mixture, ...]:
    """Fit Gaussian mixtures to each context x (B, n, d) by EM with splitting (module docstring), one
    per model-choice penalty; the splitting path is shared, only the choice of K differs.

    penalties: per-parameter penalty of the model choice in units of log n: 1.0 is BIC (Schwarz 1978),
        about 2 / log n is AIC (Akaike 1974).
    max_components: largest K tried; also at most n // (d + 1), so every component has data.
    prior: covariance shrinkage pseudo-points (default d + 2).
    Computed in float64 without gradients; returns float64 tensors."""
    b, n, d = x.shape
    x64 = x.detach().to(torch.float64)
    prior = float(d + 2) if prior is None else float(prior)
    pens = [float(p) * math.log(max(n, 2)) for p in penalties]
    k_max = max(1, min(int(max_components), n // (d + 1)))
    ones = torch.ones(b, n, 1, dtype=x64.dtype, device=x.device)
    active = torch.ones(b, 1, dtype=torch.bool, device=x.device)
    with torch.no_grad():
        log_w, means, cov, cov_dof = _m_step(x64, ones, active, prior)
        _, _, _, _, loglik = _em(x64, log_w, means, cov, active, prior, 0)
        start = [_pad(log_w, k_max, -math.inf), _pad(means, k_max, 0.0), _pad(cov, k_max, 1.0)]
        crits = [-2 * loglik + pen * (d + cov_dof) for pen in pens]
        bests = [list(start) for _ in pens]
        for k in range(2, k_max + 1):
            log_w, means, cov = _split(log_w, means, cov)
            active = torch.ones(b, k, dtype=torch.bool, device=x.device)
            log_w, means, cov, cov_dof, loglik = _em(x64, log_w, means, cov, active, prior, iters)
            padded = (_pad(log_w, k_max, -math.inf), _pad(means, k_max, 0.0), _pad(cov, k_max, 1.0))
            for j, pen in enumerate(pens):
                c = -2 * loglik + pen * (k - 1 + k * d + cov_dof)
                better = c < crits[j]
                crits[j] = torch.where(better, c, crits[j])
                for i, t in enumerate(padded):
                    bests[j][i] = torch.where(better.reshape(-1, *([1] * (t.ndim - 1))), t, bests[j][i])
        out = []
        for log_w, means, cov in bests:
            if k_max > 1 and final_iters:
                log_w, means, cov, _, _ = _em(x64, log_w, means, cov, torch.isfinite(log_w), prior, final_iters)
            _, prec_chol, log_norm = _joint(x64[:, :1], log_w, means, cov)
            out.append(Mixture(log_norm, means, prec_chol))
    return tuple(out)


def fit_mixture(x: Tensor, max_components: int = 10, *, penalty: float = 1.0, **kwargs) -> Mixture:
    """One mixture per context (`fit_mixtures` with a single penalty, default BIC)."""
    return fit_mixtures(x, (penalty,), max_components, **kwargs)[0]


def mixture_log_density_and_score(mix: Mixture, y: Tensor) -> tuple[Tensor, Tensor]:
    """log p(y) (B, m) and its gradient (B, m, d) of fitted mixtures at points y (B, m, d), in y's dtype."""
    y64 = y.to(mix.means.dtype)
    joint, grads = [], []
    for k in range(mix.means.shape[1]):
        z = (y64 - mix.means[:, k, None]) @ mix.prec_chol[:, k]  # (B, m, d)
        joint.append(mix.log_norm[:, k, None] - 0.5 * (z * z).sum(-1))
        grads.append(-(z @ mix.prec_chol[:, k].transpose(-1, -2)))
    joint_t = torch.stack(joint, -1)  # (B, m, K)
    log_p = torch.logsumexp(joint_t, -1)
    resp = torch.softmax(joint_t, -1)
    score = (resp[..., None] * torch.stack(grads, -2)).sum(-2)
    return log_p.to(y.dtype), score.to(y.dtype)
